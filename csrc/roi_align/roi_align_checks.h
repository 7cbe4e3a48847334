// Argument checks of the RoIAlign ops, shared by the CPU and CUDA entry points.
#pragma once
#include "../common/checks.h"

namespace dapo_fast {

inline void check_roi_align_args(const at::Tensor& feature, const char* feature_name, int64_t feature_dim,
                                 const at::Tensor& rois, int64_t pooled_height, int64_t pooled_width) {
  check_dim(feature, feature_dim, feature_name);
  check_floating(feature, feature_name);
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), got ",
              rois.sizes());
  check_same_dtype(feature, feature_name, rois, "rois");
  check_same_device(feature, feature_name, rois, "rois");
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "output_size must be positive, got (", pooled_height, ", ",
              pooled_width, ")");
}

}  // namespace dapo_fast
