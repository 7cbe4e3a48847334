// Math shared by the CPU and CUDA kernels of cross_attention_probs_mean. The CPU kernel runs
// the same exp on 16 lanes (exp_nonpositive_x16 in cross_attention_probs_mean_cpu.cpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../common/host_device.h"

namespace dapo_fast {
namespace probs_mean_math {

// exp for x <= 0 (scores minus their row max) as a branch-free polynomial the compiler can
// vectorise (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n built in the
// exponent bits). Relative error about 2 ulp. Below -80 it returns exactly 0 (exp(-80) is
// 1.8e-35, far below float resolution next to a row sum >= 1), and the polynomial is evaluated
// at -80 instead: exp(-87..-80) would be built from denormal 2^n, which costs microcode assists
// on x86 (padding keys and masked tokens sit there).
HOST_DEVICE float exp_nonpositive(float x) {
  const bool underflow = x < -80.0f;
  x = underflow ? -80.0f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return underflow ? 0.0f : p * scale;
}

HOST_DEVICE double exp_nonpositive(double x) { return std::exp(x); }

}  // namespace probs_mean_math
}  // namespace dapo_fast
