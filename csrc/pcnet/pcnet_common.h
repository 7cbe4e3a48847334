// Soft-IoU math shared by the CPU and CUDA kernels of the PCNet ops.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace pcnet_math {

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

// Running top-2 of mask values at one pixel (the background union excluding the foreground is
// the second value when the foreground holds the first).
template <typename T>
HOST_DEVICE void top2_push(T v, int p, T& max1, int& idx1, T& max2) {
  if (v > max1) {
    max2 = max1;
    max1 = v;
    idx1 = p;
  } else if (v > max2) {
    max2 = v;
  }
}

}  // namespace pcnet_math
}  // namespace dapo_fast
