// false_negative_mask on CUDA: the shared entry (false_negative_mask_prepare.h) with the cuBLAS
// tiles of false_negative_mask_driver.h and the CUDA block kernel (device guard, stream),
// registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "false_negative_mask_cuda.h"
#include "false_negative_mask_prepare.h"
#include "false_negative_mask_driver.h"

namespace dapo_fast {
namespace {

constexpr int64_t kCudaTileRows = 4096;

struct CudaKernels {
  static at::Tensor tiles(const FalseNegativeMask& p) {
    c10::cuda::CUDAGuard guard(p.feats.device());
    const int64_t batch = p.feats.size(0);
    return false_negative_mask_tiles(p.feats, kCudaTileRows, [&](const FalseNegativeTile& t, at::Tensor& out) {
      false_negative_block_cuda_launch(p.feats.scalar_type() == at::kDouble, t.dot.data_ptr(), t.dot.stride(0),
                                       p.inv_norm.data_ptr(), p.valid.data_ptr<uint8_t>(),
                                       reinterpret_cast<uint8_t*>(out.data_ptr<bool>()), batch, t.k, t.i0, t.ni, t.a0,
                                       t.na, p.threshold, current_cuda_stream());
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_false_negative_mask<CudaKernels>(m); }

}  // namespace dapo_fast
