// Threshold-and-OR of one K x K block of region similarities, shared by the CPU and CUDA
// kernels. The block of images (i, a) holds dot[k, l] = <f_i,k, f_a,l>; with the inverse norms
// it answers both out[i, a, l] (OR over k) and out[a, i, k] (OR over l): the product is
// symmetric, so only blocks with i < a are ever computed.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace false_negative_math {

constexpr double kNormEps = 1e-12;  // F.normalize's default

// cos(k, l) > threshold for two valid regions
template <typename T>
HOST_DEVICE bool similar(T dot, T inv_norm_k, T inv_norm_l, T threshold) {
  return dot * inv_norm_k * inv_norm_l > threshold;
}

}  // namespace false_negative_math
}  // namespace dapo_fast
