// heatmap_to_box CPU kernel: parallel over maps; per map a raster-order union-find labelling
// (8-connectivity), one box per component, confidences summed directly over each box in
// double, then the union of the surviving boxes.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../common/checks.h"
#include "heatmap_to_box_common.h"

namespace dapo_fast {
namespace {

using namespace heatmap_to_box_math;

struct Scratch {
  std::vector<double> norm;
  std::vector<int> parent;  // union-find over pixels; -1 = background
  std::vector<int> component;
  std::vector<int> x0, y0, x1, y1;
};

inline int find_root(std::vector<int>& parent, int i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];  // path halving
    i = parent[i];
  }
  return i;
}

inline void unite(std::vector<int>& parent, int a, int b) {
  a = find_root(parent, a);
  b = find_root(parent, b);
  if (a == b) return;
  if (a < b) parent[b] = a; else parent[a] = b;  // the smaller index stays root
}

template <typename scalar_t>
void box_of_map(const scalar_t* map, int h, int w, double rel_threshold, double conf_threshold, bool tozero,
                float* out, Scratch& s) {
  const int n = h * w;
  double lo = INFINITY, hi = -INFINITY;
  bool has_nan = false;
  for (int i = 0; i < n; ++i) {
    const double v = static_cast<double>(map[i]);
    if (v != v) has_nan = true;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  if (has_nan || n == 0) {
    for (int k = 0; k < 4; ++k) out[k] = NAN;
    return;
  }
  s.norm.resize(n);
  s.parent.resize(n);
  for (int i = 0; i < n; ++i) {
    const double v = normalise(static_cast<double>(map[i]), lo, hi);
    s.norm[i] = v;
    s.parent[i] = v >= rel_threshold ? i : -1;
  }
  // Raster scan: join each foreground pixel with its already-visited neighbours W, NW, N, NE.
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int i = y * w + x;
      if (s.parent[i] < 0) continue;
      if (x > 0 && s.parent[i - 1] >= 0) unite(s.parent, i, i - 1);
      if (y > 0) {
        const int up = i - w;
        if (x > 0 && s.parent[up - 1] >= 0) unite(s.parent, i, up - 1);
        if (s.parent[up] >= 0) unite(s.parent, i, up);
        if (x + 1 < w && s.parent[up + 1] >= 0) unite(s.parent, i, up + 1);
      }
    }
  }
  // Component boxes (inclusive-exclusive, like cv2 stats x, y, x + w, y + h).
  s.component.assign(n, -1);
  s.x0.clear(), s.y0.clear(), s.x1.clear(), s.y1.clear();
  for (int y = 0; y < h; ++y) {
    for (int x = 0; x < w; ++x) {
      const int i = y * w + x;
      if (s.parent[i] < 0) continue;
      const int root = find_root(s.parent, i);
      int c = s.component[root];
      if (c < 0) {
        c = s.component[root] = static_cast<int>(s.x0.size());
        s.x0.push_back(x), s.y0.push_back(y), s.x1.push_back(x + 1), s.y1.push_back(y + 1);
      } else {
        if (x < s.x0[c]) s.x0[c] = x;
        if (x + 1 > s.x1[c]) s.x1[c] = x + 1;
        s.y1[c] = y + 1;  // raster order: y only grows
      }
    }
  }
  const int count = static_cast<int>(s.x0.size());
  if (count == 0) {  // only when rel_threshold > 1
    for (int k = 0; k < 4; ++k) out[k] = NAN;
    return;
  }
  std::vector<double> conf(count);
  double best = -INFINITY;
  for (int c = 0; c < count; ++c) {
    double sum = 0.0;
    for (int y = s.y0[c]; y < s.y1[c]; ++y) {
      const double* row = s.norm.data() + static_cast<int64_t>(y) * w;
      for (int x = s.x0[c]; x < s.x1[c]; ++x) sum += pixel_score(row[x], rel_threshold, tozero);
    }
    conf[c] = sum / static_cast<double>((s.x1[c] - s.x0[c]) * (s.y1[c] - s.y0[c]));
    best = conf[c] > best ? conf[c] : best;
  }
  int bx0 = w, by0 = h, bx1 = 0, by1 = 0;
  for (int c = 0; c < count; ++c) {
    if (!keep_component(conf[c], best, conf_threshold)) continue;
    bx0 = s.x0[c] < bx0 ? s.x0[c] : bx0;
    by0 = s.y0[c] < by0 ? s.y0[c] : by0;
    bx1 = s.x1[c] > bx1 ? s.x1[c] : bx1;
    by1 = s.y1[c] > by1 ? s.y1[c] : by1;
  }
  out[0] = static_cast<float>(bx0);
  out[1] = static_cast<float>(by0);
  out[2] = static_cast<float>(bx1);
  out[3] = static_cast<float>(by1);
}

at::Tensor heatmap_to_box_cpu(const at::Tensor& heatmaps_in, double rel_threshold, double conf_threshold,
                              bool tozero) {
  check_dim(heatmaps_in, 3, "heatmaps");
  check_floating(heatmaps_in, "heatmaps");
  TORCH_CHECK(heatmaps_in.size(1) * heatmaps_in.size(2) < (int64_t(1) << 31), "heatmaps maps must have < 2^31 pixels");
  const at::Tensor heatmaps = heatmaps_in.contiguous();
  const int64_t n = heatmaps.size(0);
  const int h = static_cast<int>(heatmaps.size(1)), w = static_cast<int>(heatmaps.size(2));
  at::Tensor out = at::empty({n, 4}, heatmaps.options().dtype(at::kFloat));
  if (n == 0) return out;
  float* out_ptr = out.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, heatmaps.scalar_type(), "heatmap_to_box_cpu", [&] {
    const scalar_t* maps = heatmaps.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      Scratch s;
      for (int64_t i = begin; i < end; ++i)
        box_of_map(maps + i * h * w, h, w, rel_threshold, conf_threshold, tozero, out_ptr + 4 * i, s);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { m.impl("heatmap_to_box", &heatmap_to_box_cpu); }

}  // namespace dapo_fast
