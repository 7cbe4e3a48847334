// IoU of two boxes, shared by the CPU and CUDA kernels (and by self_taught_targets). Follows
// the reference's order of operations (dapo_fast/ops/_reference/).
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace box_math {

// torchvision box_iou: inter / (area_a + area_b - inter), areas not clamped.
template <typename T>
HOST_DEVICE T iou(const T* a, const T* b) {
  const T area_a = (a[2] - a[0]) * (a[3] - a[1]);
  const T area_b = (b[2] - b[0]) * (b[3] - b[1]);
  const T w = max_of(min_of(a[2], b[2]) - max_of(a[0], b[0]), T(0));
  const T h = max_of(min_of(a[3], b[3]) - max_of(a[1], b[1]), T(0));
  const T inter = w * h;
  return inter / (area_a + area_b - inter);
}

}  // namespace box_math
}  // namespace dapo_fast
