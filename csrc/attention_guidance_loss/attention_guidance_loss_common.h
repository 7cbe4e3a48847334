// Math of the attention guidance loss (DAPO eq. 3), shared by the CPU and CUDA kernels.
//
// eq. 3 with K valid entities and S = sum_i a_i (pixelwise):
//   sum_{i != j} ||h_i - a_i||^2 = (K - 1) sum_i ||h_i - a_i||^2
//   sum_{i != j} ||a_i - a_j||^2 = 2K sum_i ||a_i||^2 - 2 ||S||^2
// so L = [(K - 1) fit - 2K norm + 2 total] / (K (K - 1)) with fit = sum ||h_i - a_i||^2,
// norm = sum ||a_i||^2, total = ||S||^2, all O(E*H*W). Fewer than two valid entities: L = 0.
// Gradients (times the upstream g): dL/dh_i = c 2(K-1)(h_i - a_i),
//   dL/da_i = c [-2(K-1)(h_i - a_i) - 4K a_i + 4 S] with c = g / (K (K - 1)), 0 for invalid i.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace attention_guidance_math {

HOST_DEVICE double guidance_loss(double fit, double norm, double total, int valid) {
  if (valid < 2) return 0.0;
  const double k = static_cast<double>(valid);
  return ((k - 1.0) * fit - 2.0 * k * norm + 2.0 * total) / (k * (k - 1.0));
}

// Coefficients of the gradient: grad_h = ch * (h - a); grad_a = -ch * (h - a) + ca * a + cs * S.
struct GuidanceGrad {
  double ch, ca, cs;
};

HOST_DEVICE GuidanceGrad guidance_grad(double upstream, int valid) {
  if (valid < 2) return {0.0, 0.0, 0.0};
  const double k = static_cast<double>(valid);
  const double c = upstream / (k * (k - 1.0));
  return {2.0 * (k - 1.0) * c, -4.0 * k * c, 4.0 * c};
}

}  // namespace attention_guidance_math
}  // namespace dapo_fast
