// Argument checks of resized_argmax, shared by the CPU and CUDA entry points.
#pragma once
#include "../common/checks.h"

namespace dapo_fast {

inline void check_resized_argmax_args(const at::Tensor& heatmaps, const at::Tensor& sizes) {
  check_dim(heatmaps, 3, "heatmaps");
  check_floating(heatmaps, "heatmaps");
  TORCH_CHECK(sizes.dim() == 2 && sizes.size(1) == 2 && sizes.size(0) == heatmaps.size(0),
              "sizes must have shape [N, 2] (height, width) with N = heatmaps.size(0), got ", sizes.sizes());
  TORCH_CHECK(sizes.scalar_type() == at::kLong, "sizes must be int64, got ", sizes.scalar_type());
  check_same_device(heatmaps, "heatmaps", sizes, "sizes");
  TORCH_CHECK(heatmaps.numel() > 0 || heatmaps.size(0) == 0, "heatmaps must have a non-empty map size, got ",
              heatmaps.sizes());
}

}  // namespace dapo_fast
