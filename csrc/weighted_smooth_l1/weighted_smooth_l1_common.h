// smooth_l1 and its derivative, shared by the CPU and CUDA kernels of weighted_smooth_l1.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace smooth_l1_math {

// smooth_l1 and its derivative (torch's definition; beta == 0 is L1)
template <typename T>
HOST_DEVICE T smooth_l1(T diff, T beta) {
  const T n = diff < T(0) ? -diff : diff;
  if (beta == T(0)) return n;
  return n < beta ? T(0.5) * n * n / beta : n - T(0.5) * beta;
}

// torch's derivatives too: a NaN difference gives NaN for beta > 0 (smooth_l1_loss's backward)
// and 0 for beta == 0 (l1_loss's, through sign)
template <typename T>
HOST_DEVICE T smooth_l1_grad(T diff, T beta) {
  if (beta == T(0)) return diff > T(0) ? T(1) : (diff < T(0) ? T(-1) : T(0));
  return diff > beta ? T(1) : (diff < -beta ? T(-1) : diff / beta);
}

}  // namespace smooth_l1_math
}  // namespace dapo_fast
