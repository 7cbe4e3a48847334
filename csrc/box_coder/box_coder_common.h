// detectron2's Box2BoxTransform (box_encode = get_deltas, box_decode = apply_deltas) and their
// gradients, shared by the CPU and CUDA kernels (and by self_taught_targets). Each function
// works on one row of 4 values and follows the reference's order of operations
// (dapo_fast/ops/_reference/).
#pragma once
#include <math.h>

#include "../common/host_device.h"

namespace dapo_fast {
namespace box_math {

// The (wx, wy, ww, wh) delta weights.
struct Weights {
  double x, y, w, h;
};

// Box2BoxTransform.get_deltas for one (proposal, target) pair.
template <typename T>
HOST_DEVICE void encode(const T* s, const T* t, const Weights& wt, T* out) {
  const T sw = s[2] - s[0], sh = s[3] - s[1];
  const T sx = s[0] + T(0.5) * sw, sy = s[1] + T(0.5) * sh;
  const T tw = t[2] - t[0], th = t[3] - t[1];
  const T tx = t[0] + T(0.5) * tw, ty = t[1] + T(0.5) * th;
  out[0] = T(wt.x) * (tx - sx) / sw;
  out[1] = T(wt.y) * (ty - sy) / sh;
  out[2] = T(wt.w) * log(tw / sw);
  out[3] = T(wt.h) * log(th / sh);
}

// Gradient of encode w.r.t. the proposal (gs) and the target (gt).
template <typename T>
HOST_DEVICE void encode_backward(const T* g, const T* s, const T* t, const Weights& wt, T* gs, T* gt) {
  const T sw = s[2] - s[0], sh = s[3] - s[1];
  const T sx = s[0] + T(0.5) * sw, sy = s[1] + T(0.5) * sh;
  const T tw = t[2] - t[0], th = t[3] - t[1];
  const T tx = t[0] + T(0.5) * tw, ty = t[1] + T(0.5) * th;
  // dx = wx * (tx - sx) / sw;  dw = ww * (log tw - log sw)
  const T ddx_dtc = T(wt.x) / sw, ddy_dtc = T(wt.y) / sh;
  const T ddx_dsw = -T(wt.x) * (tx - sx) / (sw * sw), ddy_dsh = -T(wt.y) * (ty - sy) / (sh * sh);
  // centre = x1 + 0.5 * (x2 - x1): d/dx1 = 0.5, d/dx2 = 0.5; width: d/dx1 = -1, d/dx2 = 1
  gt[0] = g[0] * T(0.5) * ddx_dtc - g[2] * T(wt.w) / tw;
  gt[2] = g[0] * T(0.5) * ddx_dtc + g[2] * T(wt.w) / tw;
  gt[1] = g[1] * T(0.5) * ddy_dtc - g[3] * T(wt.h) / th;
  gt[3] = g[1] * T(0.5) * ddy_dtc + g[3] * T(wt.h) / th;
  gs[0] = g[0] * (-T(0.5) * ddx_dtc - ddx_dsw) + g[2] * T(wt.w) / sw;
  gs[2] = g[0] * (-T(0.5) * ddx_dtc + ddx_dsw) - g[2] * T(wt.w) / sw;
  gs[1] = g[1] * (-T(0.5) * ddy_dtc - ddy_dsh) + g[3] * T(wt.h) / sh;
  gs[3] = g[1] * (-T(0.5) * ddy_dtc + ddy_dsh) - g[3] * T(wt.h) / sh;
}

// Box2BoxTransform.apply_deltas for one (deltas, box) pair.
template <typename T>
HOST_DEVICE void decode(const T* d, const T* b, const Weights& wt, T clamp, T* out) {
  const T w = b[2] - b[0], h = b[3] - b[1];
  const T cx = b[0] + T(0.5) * w, cy = b[1] + T(0.5) * h;
  const T dx = d[0] / T(wt.x), dy = d[1] / T(wt.y);
  const T dw = clamp_max(d[2] / T(wt.w), clamp), dh = clamp_max(d[3] / T(wt.h), clamp);
  const T pcx = dx * w + cx, pcy = dy * h + cy;
  const T pw = exp(dw) * w, ph = exp(dh) * h;
  out[0] = pcx - T(0.5) * pw;
  out[1] = pcy - T(0.5) * ph;
  out[2] = pcx + T(0.5) * pw;
  out[3] = pcy + T(0.5) * ph;
}

// Gradient of decode w.r.t. the deltas (gd) and the box (gb). The clamp passes the gradient
// where the value is <= scale_clamp (torch.clamp's rule: not where it is NaN).
template <typename T>
HOST_DEVICE void decode_backward(const T* g, const T* d, const T* b, const Weights& wt, T clamp, T* gd, T* gb) {
  const T w = b[2] - b[0], h = b[3] - b[1];
  const T dx = d[0] / T(wt.x), dy = d[1] / T(wt.y);
  const T rw = d[2] / T(wt.w), rh = d[3] / T(wt.h);
  const T ew = exp(clamp_max(rw, clamp)), eh = exp(clamp_max(rh, clamp));
  const T g_cx = g[0] + g[2], g_cy = g[1] + g[3];
  const T g_pw = T(0.5) * (g[2] - g[0]), g_ph = T(0.5) * (g[3] - g[1]);
  gd[0] = g_cx * w / T(wt.x);
  gd[1] = g_cy * h / T(wt.y);
  gd[2] = rw <= clamp ? g_pw * ew * w / T(wt.w) : T(0);
  gd[3] = rh <= clamp ? g_ph * eh * h / T(wt.h) : T(0);
  gb[0] = g_cx * (T(0.5) - dx) - g_pw * ew;
  gb[2] = g_cx * (T(0.5) + dx) + g_pw * ew;
  gb[1] = g_cy * (T(0.5) - dy) - g_ph * eh;
  gb[3] = g_cy * (T(0.5) + dy) + g_ph * eh;
}

}  // namespace box_math
}  // namespace dapo_fast
