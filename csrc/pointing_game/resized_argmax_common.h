// Bilinear resize rule of resized_argmax, shared by the CPU and CUDA kernels.
//
// By default it is torch's / OpenCV's align_corners=False rule: output index d reads source
// coordinate (d + 0.5) * in / out - 0.5 clamped at 0; with align_corners (torch's
// align_corners=True, PCNet's evaluation) it reads d * (in - 1) / (out - 1) (0 for out == 1).
// Taps floor(src) and floor(src) + 1 (the last row/column taps itself with weight 0 on the missing
// neighbour). Everything is double and written in one
// fixed order, an interpolation along x then one along y, so every backend and the reference
// (dapo_fast/ops/_reference/pointing_game.py) round identically. Each interpolation is exact where
// it reads one value (see lerp): pixels whose values are mathematically equal because they read
// equal taps (a plateau at the maximum, repeated rows or columns) are equal bit for bit, and the
// tie rule then picks the first of them.
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

HOST_DEVICE Tap axis_tap(long long dst, long long out_size, long long in_size, bool align_corners) {
  double src;
  if (align_corners) {  // torch's scale (in - 1) / (out - 1), then scale * d
    const double scale =
        out_size > 1 ? static_cast<double>(in_size - 1) / static_cast<double>(out_size - 1) : 0.0;
    src = scale * static_cast<double>(dst);
  } else {
    const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
    src = (static_cast<double>(dst) + 0.5) * scale - 0.5;
    if (src < 0.0) src = 0.0;
  }
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

// w_low * low + w_high * high, exact where it reads one value: low when w_high is 0 (a zero weight
// reads nothing, so a +inf there makes no 0 * inf = NaN), the common value when low == high.
HOST_DEVICE double lerp(double low, double high, double w_low, double w_high) {
  return (w_high == 0.0 || low == high) ? low : w_low * low + w_high * high;
}

// a = (low row, low col), b = (low, high), c = (high, low), d = (high, high)
HOST_DEVICE double bilinear(const Tap& ty, const Tap& tx, double a, double b, double c, double d) {
  return lerp(lerp(a, b, tx.w_low, tx.w_high), lerp(c, d, tx.w_low, tx.w_high), ty.w_low, ty.w_high);
}

// Running maximum with the tie rule: the smallest row-major index among equal maxima.
HOST_DEVICE bool better(double v, long long idx, double best, long long best_idx) {
  return v > best || (v == best && idx < best_idx) || (best_idx < 0);
}

}  // namespace resized_argmax_math
}  // namespace dapo_fast
