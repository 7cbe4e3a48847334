// heatmap_to_box CPU kernel: parallel over maps. Per map: normalise, cut each row into runs of
// kept pixels, union-find over runs (8-connectivity: runs of consecutive rows that overlap or
// touch diagonally), one box per component, confidences summed directly over each box in
// double, then the union of the surviving boxes.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "heatmap_to_box_common.h"
#include "heatmap_to_box_prepare.h"

namespace dapo_fast {
namespace {

using namespace heatmap_to_box_math;

struct Scratch {
  std::vector<double> norm;
  std::vector<int> run_start, run_end, run_row, run_parent;  // runs of kept pixels, row by row
  std::vector<int> row_first_run;                           // runs of row y: [row_first_run[y], row_first_run[y + 1])
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
  bool non_finite = false;  // NaN or +-inf: min-max normalisation is undefined, the box is NaN
  for (int i = 0; i < n; ++i) {
    const double v = static_cast<double>(map[i]);
    non_finite |= !is_finite(v);
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  if (non_finite || n == 0) {
    for (int k = 0; k < 4; ++k) out[k] = NAN;
    return;
  }
  // Normalised map, and the runs of kept pixels (maximal horizontal segments) of every row.
  s.norm.resize(n);
  s.run_start.clear(), s.run_end.clear(), s.run_row.clear();
  s.row_first_run.assign(h + 1, 0);
  for (int y = 0; y < h; ++y) {
    s.row_first_run[y] = static_cast<int>(s.run_start.size());
    const scalar_t* src = map + static_cast<int64_t>(y) * w;
    double* row = s.norm.data() + static_cast<int64_t>(y) * w;
    for (int x = 0; x < w; ++x) row[x] = normalise(static_cast<double>(src[x]), lo, hi);
    int x = 0;
    while (x < w) {
      while (x < w && !(row[x] >= rel_threshold)) ++x;
      if (x == w) break;
      const int begin = x;
      while (x < w && row[x] >= rel_threshold) ++x;
      s.run_start.push_back(begin), s.run_end.push_back(x), s.run_row.push_back(y);
    }
  }
  s.row_first_run[h] = static_cast<int>(s.run_start.size());
  const int runs = s.row_first_run[h];
  if (runs == 0) {  // only when rel_threshold > 1
    for (int k = 0; k < 4; ++k) out[k] = NAN;
    return;
  }
  // Union runs of consecutive rows that touch with 8-connectivity: [a, b) and [c, d) touch when
  // c <= b and a <= d (they overlap or meet at a diagonal).
  s.run_parent.resize(runs);
  for (int r = 0; r < runs; ++r) s.run_parent[r] = r;
  for (int y = 1; y < h; ++y) {
    int p = s.row_first_run[y - 1];
    const int p_end = s.row_first_run[y];
    for (int r = s.row_first_run[y]; r < s.row_first_run[y + 1]; ++r) {
      while (p < p_end && s.run_end[p] < s.run_start[r]) ++p;  // runs ending left of the diagonal
      for (int q = p; q < p_end && s.run_start[q] <= s.run_end[r]; ++q) unite(s.run_parent, r, q);
    }
  }
  // Component boxes (inclusive-exclusive, like cv2 stats x, y, x + w, y + h).
  s.component.assign(runs, -1);
  s.x0.clear(), s.y0.clear(), s.x1.clear(), s.y1.clear();
  for (int r = 0; r < runs; ++r) {
    const int root = find_root(s.run_parent, r);
    int c = s.component[root];
    if (c < 0) {
      c = s.component[root] = static_cast<int>(s.x0.size());
      s.x0.push_back(s.run_start[r]), s.y0.push_back(s.run_row[r]);
      s.x1.push_back(s.run_end[r]), s.y1.push_back(s.run_row[r] + 1);
    } else {
      if (s.run_start[r] < s.x0[c]) s.x0[c] = s.run_start[r];
      if (s.run_end[r] > s.x1[c]) s.x1[c] = s.run_end[r];
      s.y1[c] = s.run_row[r] + 1;  // runs come in row order
    }
  }
  const int count = static_cast<int>(s.x0.size());
  std::vector<double> conf(count);
  double best = -INFINITY;
  for (int c = 0; c < count; ++c) {
    double sum = 0.0;
    for (int y = s.y0[c]; y < s.y1[c]; ++y) {
      const double* row = s.norm.data() + static_cast<int64_t>(y) * w;
      if (tozero) {
        for (int x = s.x0[c]; x < s.x1[c]; ++x) sum += pixel_score(row[x], rel_threshold, true);
      } else {
        for (int x = s.x0[c]; x < s.x1[c]; ++x) sum += row[x];
      }
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

struct CpuKernels {
  static void run(const HeatmapToBox& p);
};

void CpuKernels::run(const HeatmapToBox& p) {
  const at::Tensor& heatmaps = p.heatmaps;
  const int64_t n = heatmaps.size(0);
  const int h = static_cast<int>(heatmaps.size(1)), w = static_cast<int>(heatmaps.size(2));
  float* out_ptr = p.out.data_ptr<float>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, heatmaps.scalar_type(), "heatmap_to_box_cpu", [&] {
    const scalar_t* maps = heatmaps.data_ptr<scalar_t>();
    dapo_fast::parallel_for(0, n, grain_for(20 * h * w), [&](int64_t begin, int64_t end) {
      Scratch s;
      for (int64_t i = begin; i < end; ++i)
        box_of_map(maps + i * h * w, h, w, p.rel_threshold, p.conf_threshold, p.tozero, out_ptr + 4 * i, s);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_heatmap_to_box<CpuKernels>(m); }

}  // namespace dapo_fast
