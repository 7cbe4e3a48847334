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
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "resized_argmax_checks.h"
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

template <typename scalar_t>
void peak_of_map(const scalar_t* map, int64_t h, int64_t w, int64_t out_h, int64_t out_w, int64_t* out,
                 std::vector<double>& src, std::vector<Tap>& ty, std::vector<Tap>& tx, std::vector<int>& row_first,
                 std::vector<int>& row_last, std::vector<int>& col_first, std::vector<int>& col_last) {
  src.resize(h * w);
  double best_src = -INFINITY, max_abs = 0.0;
  int64_t best_src_idx = 0;
  bool has_nan = false;
  for (int64_t i = 0; i < h * w; ++i) {
    const double v = static_cast<double>(map[i]);
    src[i] = v;
    if (v != v) has_nan = true;
    if (v > best_src) best_src = v, best_src_idx = i;
    if (std::fabs(v) > max_abs) max_abs = std::fabs(v);
  }
  ty.resize(out_h);
  tx.resize(out_w);
  for (int64_t y = 0; y < out_h; ++y) ty[y] = axis_tap(y, out_h, h);
  for (int64_t x = 0; x < out_w; ++x) tx[x] = axis_tap(x, out_w, w);

  auto value_at = [&](int64_t y, int64_t x) {
    const Tap& a = ty[y];
    const Tap& b = tx[x];
    const double* r0 = src.data() + static_cast<int64_t>(a.low) * w;
    const double* r1 = src.data() + static_cast<int64_t>(a.high) * w;
    return bilinear(a, b, r0[b.low], r0[b.high], r1[b.low], r1[b.high]);
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

  if (has_nan || !(best_src > -INFINITY)) {
    full_scan();
  } else {
    reader_ranges(ty, static_cast<int>(h), row_first, row_last);
    reader_ranges(tx, static_cast<int>(w), col_first, col_last);
    // lower bound: an output pixel that reads the source peak
    const int64_t pr = best_src_idx / w, pc = best_src_idx % w;
    consider(row_first[pr] >= 0 ? row_first[pr] : 0, col_first[pc] >= 0 ? col_first[pc] : 0);
    const double cut = best.value - 1e-12 * max_abs;  // rounding can lift a value a few ulps above its taps
    int64_t work = 0;
    for (int64_t i = 0; i < h * w && work <= out_h * out_w; ++i) {
      if (src[i] >= cut) {
        const int64_t r = i / w, c = i % w;
        work += static_cast<int64_t>(row_last[r] - row_first[r] + 1) * (col_last[c] - col_first[c] + 1);
      }
    }
    if (work > out_h * out_w) {
      full_scan();
    } else {
      for (int64_t i = 0; i < h * w; ++i) {
        if (!(src[i] >= cut)) continue;
        const int64_t r = i / w, c = i % w;
        for (int64_t y = row_first[r]; y <= row_last[r]; ++y)
          for (int64_t x = col_first[c]; x <= col_last[c]; ++x) consider(y, x);
      }
    }
  }
  const long long idx = best.index < 0 ? 0 : best.index;
  out[0] = idx / out_w;
  out[1] = idx % out_w;
}

at::Tensor resized_argmax_cpu(const at::Tensor& heatmaps_in, const at::Tensor& sizes_in) {
  check_resized_argmax_args(heatmaps_in, sizes_in);
  const at::Tensor heatmaps = heatmaps_in.contiguous();
  const at::Tensor sizes = sizes_in.contiguous();
  const int64_t n = heatmaps.size(0), h = heatmaps.size(1), w = heatmaps.size(2);
  const int64_t* size_ptr = sizes.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK(size_ptr[2 * i] > 0 && size_ptr[2 * i + 1] > 0, "sizes must be positive, got (",
                size_ptr[2 * i], ", ", size_ptr[2 * i + 1], ") for map ", i);
  TORCH_CHECK(n == 0 || (h > 0 && w > 0), "heatmaps must have a non-empty map size, got ", heatmaps.sizes());
  at::Tensor out = at::empty({n, 2}, heatmaps.options().dtype(at::kLong));
  if (n == 0) return out;
  int64_t* out_ptr = out.data_ptr<int64_t>();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, heatmaps.scalar_type(), "resized_argmax_cpu", [&] {
    const scalar_t* maps = heatmaps.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      std::vector<double> src;
      std::vector<Tap> ty, tx;
      std::vector<int> rf, rl, cf, cl;
      for (int64_t i = begin; i < end; ++i)
        peak_of_map(maps + i * h * w, h, w, size_ptr[2 * i], size_ptr[2 * i + 1], out_ptr + 2 * i, src, ty, tx, rf,
                    rl, cf, cl);
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { m.impl("resized_argmax", &resized_argmax_cpu); }

}  // namespace dapo_fast
