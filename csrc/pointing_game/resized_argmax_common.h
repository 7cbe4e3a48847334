// Bilinear resize rule of resized_argmax, shared by the CPU and CUDA kernels.
//
// It is torch's / OpenCV's align_corners=False rule: output index d reads source coordinate
// (d + 0.5) * in / out - 0.5 clamped at 0, taps floor(src) and floor(src) + 1 (the last row/column
// taps itself with weight 0 on the missing neighbour). Everything is double and written in one
// fixed order, value = wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d), so every backend and
// the reference (dapo_fast/ops/_reference/) round identically.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {
namespace resized_argmax_math {

struct Tap {
  int low;
  int high;
  double w_low;
  double w_high;
};

HOST_DEVICE Tap axis_tap(long long dst, long long out_size, long long in_size) {
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  double src = (static_cast<double>(dst) + 0.5) * scale - 0.5;
  if (src < 0.0) src = 0.0;
  Tap t;
  t.low = static_cast<int>(src);
  if (t.low > in_size - 1) t.low = static_cast<int>(in_size - 1);
  if (t.low < in_size - 1) {
    t.high = t.low + 1;
    t.w_high = src - static_cast<double>(t.low);
  } else {
    t.high = t.low;
    t.w_high = 0.0;
  }
  t.w_low = 1.0 - t.w_high;
  return t;
}

// a = (low row, low col), b = (low, high), c = (high, low), d = (high, high)
HOST_DEVICE double bilinear(const Tap& ty, const Tap& tx, double a, double b, double c, double d) {
  const double top = tx.w_low * a + tx.w_high * b;
  const double bottom = tx.w_low * c + tx.w_high * d;
  return ty.w_low * top + ty.w_high * bottom;
}

// Running maximum with the tie rule: the smallest row-major index among equal maxima.
HOST_DEVICE bool better(double v, long long idx, double best, long long best_idx) {
  return v > best || (v == best && idx < best_idx) || (best_idx < 0);
}

}  // namespace resized_argmax_math
}  // namespace dapo_fast
