// The one entry of false_negative_mask, registered for CPU and CUDA alike
// (false_negative_mask_entry<Kernels>): checks, the features in the compute dtype, their inverse
// norms, the validity bytes, then the device's tiles (Kernels::tiles: the tiling of
// false_negative_mask_driver.h with the device's block kernel, in false_negative_mask_cpu.cpp and
// false_negative_mask_cuda_impl.cpp).
#pragma once
#include <torch/library.h>

#include "../common/checks.h"
#include "false_negative_mask_common.h"

namespace dapo_fast {

inline void check_false_negative_mask_args(const at::Tensor& feats, const at::Tensor& valid, double threshold) {
  check_dim(feats, 3, "region_feats");
  check_floating(feats, "region_feats");
  check_same_device(feats, "region_feats", valid, "region_valid");
  TORCH_CHECK(valid.scalar_type() == at::kBool && valid.dim() == 2 && valid.size(0) == feats.size(0) &&
                  valid.size(1) == feats.size(1),
              "region_valid must be a bool tensor of shape [B, K] = [", feats.size(0), ", ", feats.size(1), "], got ",
              valid.scalar_type(), " ", valid.sizes());
  TORCH_CHECK(threshold >= -1.0 && threshold <= 1.0, "threshold must be in [-1, 1], got ", threshold);
}

struct FalseNegativeMask {
  at::Tensor feats;     // contiguous [B, K, D], float (also for half / bfloat16) or double
  at::Tensor inv_norm;  // [B*K] 1 / max(||f||, eps), feats' dtype
  at::Tensor valid;     // [B*K] uint8
  double threshold = 0;
};

inline FalseNegativeMask prepare_false_negative_mask(const at::Tensor& region_feats, const at::Tensor& region_valid,
                                                     double threshold) {
  check_false_negative_mask_args(region_feats, region_valid, threshold);
  const auto ct = region_feats.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  FalseNegativeMask p;
  p.feats = region_feats.to(ct).contiguous();
  p.inv_norm = p.feats.norm(2, {-1}, false)
                   .clamp_min(false_negative_math::kNormEps)
                   .reciprocal()
                   .reshape({-1})
                   .contiguous();
  p.valid = region_valid.contiguous().to(at::kByte).reshape({-1});
  p.threshold = threshold;
  return p;
}

// Kernels::tiles(p) returns the [B, B, K] bool mask.
template <typename Kernels>
at::Tensor false_negative_mask_entry(const at::Tensor& region_feats, const at::Tensor& region_valid,
                                     double threshold) {
  return Kernels::tiles(prepare_false_negative_mask(region_feats, region_valid, threshold));
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_false_negative_mask(torch::Library& m) {
  m.impl("false_negative_mask", &false_negative_mask_entry<Kernels>);
}

}  // namespace dapo_fast
