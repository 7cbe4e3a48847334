// Argument checks of false_negative_mask, shared by the CPU and CUDA entry points.
#pragma once
#include "../common/checks.h"

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

}  // namespace dapo_fast
