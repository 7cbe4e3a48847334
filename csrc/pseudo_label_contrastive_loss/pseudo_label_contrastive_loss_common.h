// Math of the pseudo-label contrastive loss shared by the CPU and CUDA kernels.
//
// Row (b, q) of the loss sees every region (a, k) of the batch. Which of them enter the
// student softmax (S) and the teacher pseudo-label softmax (T) depends only on the region's
// validity, whether a == b, the false-negative flag fn[b, a, k] and the mode:
//   none: S = valid,               T = valid & a == b
//   fne : S = valid & !(fn & a!=b), T = valid & a == b
//   fnc : S = valid,               T = valid & (a == b | fn)
// T is always inside S, so log_softmax_S is finite wherever a pseudo-label is non-zero.
#pragma once
#include <cstdint>
#include <cstring>

#include "../common/host_device.h"

namespace dapo_fast {
namespace pseudo_label_math {

enum Mode : int { kModeNone = 0, kModeFne = 1, kModeFnc = 2 };
enum Reduction : int { kReduceMean = 0, kReduceSum = 1, kReduceNone = 2 };

HOST_DEVICE bool in_student(bool valid, bool same_image, bool fn, int mode) {
  return valid && !(mode == kModeFne && !same_image && fn);
}

HOST_DEVICE bool in_teacher(bool valid, bool same_image, bool fn, int mode) {
  return valid && (same_image || (mode == kModeFnc && fn));
}

// Whether any of the n membership flags is set (a row's teacher set is not empty).
HOST_DEVICE bool any_member(int64_t n, const uint8_t* member) {
  for (int64_t j = 0; j < n; ++j)
    if (member[j]) return true;
  return false;
}

// exp(x) for x <= 0 as plain arithmetic the compiler vectorises (Cephes expf: 2^n * e^r with
// |r| <= ln2/2, relative error ~2e-7); below -87.3 (and for -inf) it returns 0, for NaN NaN.
HOST_DEVICE float exp_nonpositive(float x) {
  // NaN takes the -87 path too, so the int conversion below never sees it
  const float clamped = x >= -87.0f ? (x > 0.0f ? 0.0f : x) : -87.0f;
  const float t = clamped * 1.44269504088896341f;
  const float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (|t| < 2^22)
  float r = clamped - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x >= -87.0f ? e * scale : (x != x ? x : 0.0f);
}

}  // namespace pseudo_label_math
}  // namespace dapo_fast
