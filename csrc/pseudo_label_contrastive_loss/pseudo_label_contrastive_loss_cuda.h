// Raw-pointer launcher of the pseudo-label loss row kernel (CUDA). Plain C++: the tensor glue
// (pseudo_label_contrastive_loss_cuda_impl.cpp) does the tiling and the cuBLAS products through ATen.
#pragma once
#include <cstdint>

namespace dapo_fast {

struct PseudoLabelRowArgs {
  void* s;                  // [rows, s_cols] raw student dots; G on return when write_grad
  const void* t;            // [rows, t_cols] raw teacher dots
  const uint8_t* s_member;  // [rows / num_q or 1, s_cols] (row stride s_member_stride)
  const uint8_t* t_member;  // [rows / num_q, t_cols]
  const int64_t* t_column;  // [rows / num_q, t_cols]
  int64_t s_member_stride;
  const uint8_t* valid_row; // [rows]
  const void* coef;         // [rows] or null
  void* loss;               // [rows]
  int64_t rows, num_q, s_cols, t_cols;
  double inv_tau, inv_teacher_tau;
  bool write_grad;
  bool is_double;           // float otherwise
};

void pseudo_label_rows_cuda_launch(const PseudoLabelRowArgs& args, void* stream);

}  // namespace dapo_fast
