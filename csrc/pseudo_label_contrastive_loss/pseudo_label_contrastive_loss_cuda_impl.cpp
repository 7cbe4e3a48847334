// The fused pseudo-label loss on CUDA: the shared entries
// (pseudo_label_contrastive_loss_prepare.h) with the cuBLAS tiling of
// pseudo_label_contrastive_loss_driver.h and the CUDA row kernel (device guard, stream),
// registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "../common/cuda_glue.h"
#include "pseudo_label_contrastive_loss_cuda.h"
#include "pseudo_label_contrastive_loss_prepare.h"

namespace dapo_fast {
namespace {

using namespace pseudo_label_math;

constexpr int64_t kCudaTileElements = int64_t(1) << 24;  // 64 MB float logits tile

void launch_rows(const PseudoLabelTile& tile) {
  PseudoLabelRowArgs a;
  a.s = tile.s.data_ptr();
  a.t = tile.t.data_ptr();
  a.s_member = tile.s_member.data_ptr<uint8_t>();
  a.t_member = tile.t_member.data_ptr<uint8_t>();
  a.t_column = tile.t_column.data_ptr<int64_t>();
  a.s_member_stride = tile.s_member_stride;
  a.valid_row = tile.valid_row.data_ptr<uint8_t>();
  a.coef = tile.write_grad ? tile.coef.data_ptr() : nullptr;
  a.loss = tile.loss.data_ptr();
  a.rows = tile.rows;
  a.num_q = tile.num_q;
  a.s_cols = tile.s_cols;
  a.t_cols = tile.t_cols;
  a.inv_tau = tile.inv_tau;
  a.inv_teacher_tau = tile.inv_teacher_tau;
  a.write_grad = tile.write_grad;
  a.is_double = tile.s.scalar_type() == at::kDouble;
  pseudo_label_rows_cuda_launch(a, current_cuda_stream());
}

struct CudaKernels {
  static PseudoLabelResult tiles(const PseudoLabelLoss& p) {
    c10::cuda::CUDAGuard guard(p.phrase.device());
    return p.tiles(kCudaTileElements, launch_rows);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_pseudo_label_contrastive_loss<CudaKernels>(m); }

}  // namespace dapo_fast
