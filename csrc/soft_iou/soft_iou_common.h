// Soft-IoU math shared by the CPU and CUDA kernels of soft_iou and region_ambiguity.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace soft_iou_math {

enum Variant : int { kIoU = 0, kHalfDice = 1 };

// Denominator + eps of the soft IoU from its three sums (same association as the reference:
// (sum r + sum m) - inter, then + eps).
template <typename T>
HOST_DEVICE T soft_denominator(T inter, T sum_r, T sum_m, int variant, T eps) {
  const T total = sum_r + sum_m;
  return (variant == kIoU ? total - inter : total) + eps;
}

// d iou / d r_k = m_k * a - c: the two coefficients for one (map, mask) pair.
template <typename T>
HOST_DEVICE void soft_iou_grad_coeffs(T inter, T denom, int variant, T& a, T& c) {
  c = inter / (denom * denom);
  a = (variant == kIoU ? static_cast<T>(1) / denom + c : static_cast<T>(1) / denom);
}

}  // namespace soft_iou_math
}  // namespace dapo_fast
