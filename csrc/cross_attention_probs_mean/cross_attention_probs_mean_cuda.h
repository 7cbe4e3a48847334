// Raw-pointer launchers of the cross_attention_probs_mean CUDA kernels (plain C++ header:
// no CUDA or torch types cross into the tensor glue).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

struct ProbsMeanSizes {
  int64_t batch, heads, rows, keys, dim;
  int64_t qs[3], ks[3];  // strides of q [B, H, HW, .] and k [B, H, T, .] (unit stride along d)
  double scale, weight;
};

// out[b, i, t] (= or +=) weight/heads * sum_h softmax_t(q k^T * scale + bias); out has strides os.
// bias: [B, T] contiguous in the input dtype, or null.
void probs_mean_forward_cuda_launch(DType dtype, const void* q, const void* k, const void* bias, void* out,
                                    const int64_t* os, bool accumulate, const ProbsMeanSizes& s, void* stream);

// grad: [B, HW, T] contiguous. ds_workspace: [B, H, HW, T] of float (double for double inputs).
// dq, dk: contiguous [B, H, HW, d] / [B, H, T, d], fully written. Deterministic (no atomics).
void probs_mean_backward_cuda_launch(DType dtype, const void* grad, const void* q, const void* k, const void* bias,
                                     void* ds_workspace, void* dq, void* dk, const ProbsMeanSizes& s, void* stream);

}  // namespace dapo_fast
