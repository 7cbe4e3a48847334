// resized_argmax CPU kernel: parallel over maps, each thread owns its maps' outputs.
//
// Exact without evaluating every output pixel: a resized value is a convex combination of its
// four source taps, so it cannot exceed their maximum (up to a few ulps of rounding). Evaluate one
// pixel near the source peak for a lower bound L, then evaluate only the output pixels that read
// a source pixel >= L - margin. The answer is the same pixel a full evaluation picks (same value
// formula, same tie rule); when too many source pixels qualify (flat maps) it evaluates everything.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "resized_argmax_prepare.h"
#include "resized_argmax_common.h"

namespace dapo_fast {
namespace {

using namespace resized_argmax_math;

struct Peak {
  double value = 0.0;
  long long index = -1;
};

// For each source index r, the output range [first[r], last[r]] of indices that read r.
void reader_ranges(const std::vector<Tap>& taps, int in_size, std::vector<int>& first, std::vector<int>& last) {
  first.assign(in_size, -1);
  last.assign(in_size, -2);
  for (int d = 0; d < static_cast<int>(taps.size()); ++d) {
    for (int r : {taps[d].low, taps[d].high}) {
      if (first[r] < 0) first[r] = d;
      last[r] = d;
    }
  }
}

// Maximum and minimum of one row; `nan` is set when the row holds a NaN. Vectorised with GCC
// vector extensions for float/double (max/min are exact in any order). 16-byte vectors: native
// on the baseline ISA (wider ones are split through the stack there, slower than scalar code).
template <typename T>
inline double row_max(const T* x, int64_t n, bool& nan, double& lowest) {
  double best = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    nan |= v != v;
    best = v > best ? v : best;
    lowest = v < lowest ? v : lowest;
  }
  return best;
}

template <typename T, int W>
inline double row_max_vec(const T* x, int64_t n, bool& nan, double& lowest) {
  typedef T V __attribute__((vector_size(W * sizeof(T))));
  V hi, lo, seen_nan;
  for (int j = 0; j < W; ++j) hi[j] = -INFINITY, lo[j] = INFINITY, seen_nan[j] = 0;
  int64_t i = 0;
  for (; i + W <= n; i += W) {
    V v;
    std::memcpy(&v, x + i, sizeof(V));
    hi = v > hi ? v : hi;
    lo = v < lo ? v : lo;
    seen_nan = v != v ? v : seen_nan;  // NaN lanes carry NaN (non-zero)
  }
  double best = -INFINITY;
  for (int j = 0; j < W; ++j) {
    best = hi[j] > best ? hi[j] : best;
    lowest = lo[j] < lowest ? lo[j] : lowest;
    nan |= seen_nan[j] != 0;
  }
  const double tail = row_max(x + i, n - i, nan, lowest);
  return tail > best ? tail : best;
}

inline double row_max(const float* x, int64_t n, bool& nan, double& lowest) {
  return row_max_vec<float, 4>(x, n, nan, lowest);
}
inline double row_max(const double* x, int64_t n, bool& nan, double& lowest) {
  return row_max_vec<double, 2>(x, n, nan, lowest);
}

template <typename scalar_t>
void peak_of_map(const scalar_t* map, int64_t h, int64_t w, int64_t out_h, int64_t out_w, bool align_corners,
                 int64_t* out,
                 std::vector<double>& row_best, std::vector<Tap>& ty, std::vector<Tap>& tx, std::vector<int>& row_first,
                 std::vector<int>& row_last, std::vector<int>& col_first, std::vector<int>& col_last) {
  // one vectorised pass: the maximum of every row (and whether there is a NaN)
  row_best.resize(h);
  bool has_nan = false;
  double best_src = -INFINITY, lowest = INFINITY;
  int64_t best_row = 0;
  for (int64_t y = 0; y < h; ++y) {
    row_best[y] = row_max(map + y * w, w, has_nan, lowest);
    if (row_best[y] > best_src) best_src = row_best[y], best_row = y;
  }
  ty.resize(out_h);
  tx.resize(out_w);
  for (int64_t y = 0; y < out_h; ++y) ty[y] = axis_tap(y, out_h, h, align_corners);
  for (int64_t x = 0; x < out_w; ++x) tx[x] = axis_tap(x, out_w, w, align_corners);

  auto value_at = [&](int64_t y, int64_t x) {
    const Tap& a = ty[y];
    const Tap& b = tx[x];
    const scalar_t* r0 = map + static_cast<int64_t>(a.low) * w;
    const scalar_t* r1 = map + static_cast<int64_t>(a.high) * w;
    return bilinear(a, b, static_cast<double>(r0[b.low]), static_cast<double>(r0[b.high]),
                    static_cast<double>(r1[b.low]), static_cast<double>(r1[b.high]));
  };
  Peak best;
  auto consider = [&](int64_t y, int64_t x) {
    const double v = value_at(y, x);
    const long long idx = y * out_w + x;
    // NaN counts as the maximum, as in torch.argmax / np.argmax: the first NaN wins
    const bool best_nan = best.index >= 0 && best.value != best.value;
    if (v != v) {
      if (!best_nan || idx < best.index) best.value = v, best.index = idx;
    } else if (!best_nan && better(v, idx, best.value, best.index)) {
      best.value = v, best.index = idx;
    }
  };
  auto full_scan = [&]() {
    for (int64_t y = 0; y < out_h; ++y)
      for (int64_t x = 0; x < out_w; ++x) consider(y, x);
  };

  if (has_nan || !std::isfinite(best_src) || !std::isfinite(lowest)) {  // no finite margin to prune with
    full_scan();
  } else {
    const double max_abs = std::fabs(best_src) > std::fabs(lowest) ? std::fabs(best_src) : std::fabs(lowest);
    reader_ranges(ty, static_cast<int>(h), row_first, row_last);
    reader_ranges(tx, static_cast<int>(w), col_first, col_last);
    // lower bound: an output pixel that reads the source peak
    int64_t pc = 0;
    for (int64_t x = 0; x < w; ++x) {
      if (static_cast<double>(map[best_row * w + x]) == best_src) {
        pc = x;
        break;
      }
    }
    // the output pixels whose sample point is nearest the source peak (3x3 around it)
    auto nearest = [align_corners](int64_t src, int64_t in, int64_t out) {
      const double d = !align_corners ? (static_cast<double>(src) + 0.5) * static_cast<double>(out) / in - 0.5
                       : in > 1       ? static_cast<double>(src) * static_cast<double>(out - 1) / (in - 1)
                                      : 0.0;
      const int64_t v = static_cast<int64_t>(d + 0.5);
      return v < 0 ? int64_t(0) : (v > out - 1 ? out - 1 : v);
    };
    const int64_t yc = nearest(best_row, h, out_h), xc = nearest(pc, w, out_w);
    for (int64_t y = yc - 1; y <= yc + 1; ++y)
      for (int64_t x = xc - 1; x <= xc + 1; ++x)
        if (y >= 0 && y < out_h && x >= 0 && x < out_w) consider(y, x);
    const double cut = best.value - 1e-12 * max_abs;  // rounding can lift a value a few ulps above its taps
    int64_t work = 0;
    for (int64_t y = 0; y < h && work <= out_h * out_w; ++y) {
      if (!(row_best[y] >= cut)) continue;  // no candidate in this row
      const scalar_t* row = map + y * w;
      for (int64_t x = 0; x < w; ++x)
        if (static_cast<double>(row[x]) >= cut)
          work += static_cast<int64_t>(row_last[y] - row_first[y] + 1) * (col_last[x] - col_first[x] + 1);
    }
    if (work > out_h * out_w) {
      full_scan();
    } else {
      for (int64_t y = 0; y < h; ++y) {
        if (!(row_best[y] >= cut)) continue;
        const scalar_t* row = map + y * w;
        for (int64_t x = 0; x < w; ++x) {
          if (!(static_cast<double>(row[x]) >= cut)) continue;
          for (int64_t oy = row_first[y]; oy <= row_last[y]; ++oy)
            for (int64_t ox = col_first[x]; ox <= col_last[x]; ++ox) consider(oy, ox);
        }
      }
    }
  }
  const long long idx = best.index < 0 ? 0 : best.index;
  out[0] = idx / out_w;
  out[1] = idx % out_w;
}

struct CpuKernels {
  static void run(const ResizedArgmax& p);
};

void CpuKernels::run(const ResizedArgmax& p) {
  const at::Tensor& heatmaps = p.heatmaps;
  const int64_t n = heatmaps.size(0), h = heatmaps.size(1), w = heatmaps.size(2);
  const int64_t* size_ptr = p.host_sizes.data_ptr<int64_t>();
  int64_t* out_ptr = p.out.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, heatmaps.scalar_type(), "resized_argmax_cpu", [&] {
    const scalar_t* maps = heatmaps.data_ptr<scalar_t>();
    dapo_fast::parallel_for(0, n, grain_for(h * w * 2 + size_ptr[0] + size_ptr[1]), [&](int64_t begin, int64_t end) {
      std::vector<double> row_best;
      std::vector<Tap> ty, tx;
      std::vector<int> rf, rl, cf, cl;
      for (int64_t i = begin; i < end; ++i)
        peak_of_map(maps + i * h * w, h, w, size_ptr[2 * i], size_ptr[2 * i + 1], p.align_corners, out_ptr + 2 * i,
                    row_best, ty, tx, rf, rl, cf, cl);
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_resized_argmax<CpuKernels>(m); }

}  // namespace dapo_fast
