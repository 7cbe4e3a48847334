// Region-ambiguity math shared by the CPU and CUDA kernels, on top of the soft IoU
// (soft_iou_common.h). With the foreground f and the background union b of the other valid
// masks: ambiguity = 1 - (iou_f - iou_b), and its gradient field
// J = -(m_f * a_f - c_f) + (m_b * a_b - c_b) from the soft-IoU coefficients (a, c) of each.
#pragma once
#include "../common/host_device.h"
#include "../soft_iou/soft_iou_common.h"

namespace dapo_fast {
namespace region_ambiguity_math {

template <typename T>
HOST_DEVICE T ambiguity(T inter_f, T den_f, T inter_b, T den_b) {
  return T(1) - (inter_f / den_f - inter_b / den_b);
}

// J at one pixel from its background and foreground mask values; constant = c_f - c_b.
template <typename T>
HOST_DEVICE T field(T bg, T fg, T a_b, T a_f, T constant) {
  return bg * a_b - fg * a_f + constant;
}

}  // namespace region_ambiguity_math
}  // namespace dapo_fast
