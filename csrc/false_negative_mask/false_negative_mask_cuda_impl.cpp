// Tensor glue of false_negative_mask on CUDA: checks, cuBLAS tiles, block kernel, registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "false_negative_mask_checks.h"
#include "false_negative_mask_cuda.h"
#include "false_negative_mask_driver.h"

namespace dapo_fast {
namespace {

constexpr int64_t kCudaTileRows = 4096;

at::Tensor false_negative_mask_cuda(const at::Tensor& region_feats, const at::Tensor& region_valid,
                                    double threshold) {
  check_false_negative_mask_args(region_feats, region_valid, threshold);
  c10::cuda::CUDAGuard guard(region_feats.device());
  const auto ct = region_feats.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor feats = region_feats.to(ct).contiguous();
  const at::Tensor inv_norm =
      feats.norm(2, {-1}, false).clamp_min(false_negative_math::kNormEps).reciprocal().reshape({-1}).contiguous();
  const at::Tensor valid = region_valid.contiguous().to(at::kByte).reshape({-1});
  const int64_t batch = feats.size(0);
  return false_negative_mask_tiles(feats, kCudaTileRows, [&](const FalseNegativeTile& t, at::Tensor& out) {
    false_negative_block_cuda_launch(ct == at::kDouble, t.dot.data_ptr(), t.dot.stride(0), inv_norm.data_ptr(),
                                     valid.data_ptr<uint8_t>(), reinterpret_cast<uint8_t*>(out.data_ptr<bool>()),
                                     batch, t.k, t.i0, t.ni, t.a0, t.na, threshold,
                                     c10::cuda::getCurrentCUDAStream().stream());
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { m.impl("false_negative_mask", &false_negative_mask_cuda); }

}  // namespace dapo_fast
