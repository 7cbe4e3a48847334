// RoIAlign CPU kernels.
//
// Each RoI's sampling pattern is computed once per call as two 1-D tables (rows and columns with
// their summed bilinear weights, see roi_align_common.h) and reused for every channel.
// Forward: parallel over (image, channel tile) for images whose RoIs cover them densely (an NHWC
// tile of the image is pooled RoI by RoI), else over (RoI, channel block). Backward: parallel over
// (image, channel [block]) so each thread owns disjoint gradient cells, writes all of them and
// adds into them in a fixed RoI order: deterministic, no atomics, and bitwise independent of the
// thread count. Every output element is computed by one task with one fixed order of operations.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef __linux__
#include <sys/mman.h>
#endif
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

#include "../common/cpu_clones.h"
#include "../common/cpu_vec.h"
#include "../common/parallel.h"
#include "roi_align_prepare.h"
#include "roi_align_common.h"

namespace dapo_fast {
namespace {

using namespace roi_align_math;

// One axis of one RoI: for output bin p, the pixels [begin[p], begin[p+1]) it reads and the
// sum over its grid samples of their bilinear weights.
template <typename T>
struct AxisTable {
  std::vector<int> begin;
  std::vector<int> index;
  std::vector<T> weight;

  void build(T start, T bin, int grid, int pooled, int size) {
    begin.assign(pooled + 1, 0);
    index.clear();
    weight.clear();
    for (int p = 0; p < pooled; ++p) {
      const int first = static_cast<int>(index.size());
      begin[p] = first;
      for (int i = 0; i < grid; ++i) {
        const AxisTaps<T> t = axis_taps(sample_coord(start, bin, p, i, grid), size);
        if (!t.valid) continue;
        add(t.low, t.w_low, first);
        add(t.high, t.w_high, first);
      }
    }
    begin[pooled] = static_cast<int>(index.size());
  }

 private:
  // Sample coordinates grow with i, so a pixel already in this bin is one of its last two entries.
  // A zero weight is not merged with a non-zero one: each sample multiplies its four taps, so a
  // tap of weight 0 on an Inf pixel makes the bin NaN (0 * Inf, as in torchvision and the
  // reference), which a merged weight would lose.
  void add(int idx, T w, int first) {
    const int n = static_cast<int>(index.size());
    for (int j = n - 1; j >= first && j >= n - 2; --j) {
      if (index[j] == idx && (weight[j] == T(0)) == (w == T(0))) {
        weight[j] += w;
        return;
      }
    }
    index.push_back(idx);
    weight.push_back(w);
  }
};

template <typename T>
struct RoiTables {
  int batch = 0;
  T inv_count = 0;
  AxisTable<T> rows;
  AxisTable<T> cols;

  template <typename scalar_t>
  void build(const scalar_t* roi, T spatial_scale, int pooled_h, int pooled_w, int sampling_ratio, bool aligned,
             int height, int width) {
    T r[5];
    for (int i = 0; i < 5; ++i) r[i] = static_cast<T>(roi[i]);
    const RoiGeometry<T> g = roi_geometry(r, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned);
    batch = g.batch;
    inv_count = g.inv_count;
    rows.build(g.start_h, g.bin_h, g.grid_h, pooled_h, height);
    cols.build(g.start_w, g.bin_w, g.grid_w, pooled_w, width);
  }
};

// y[0:n] += w * x[0:n], vectorised for float/double, converting for half/bfloat16.
template <typename scalar_t, typename acc_t>
inline void accumulate(int64_t n, acc_t w, const scalar_t* x, acc_t* y) {
  if constexpr (std::is_same_v<scalar_t, acc_t>) {
    cpu_vec::axpy(n, w, x, y);
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] += w * static_cast<acc_t>(x[i]);
  }
}

struct Shape {
  int64_t rois, channels, height, width, pooled_h, pooled_w;
};

// Channels split into `blocks` blocks of `size` (the last may be shorter; none is empty), so that
// `tasks * blocks` feeds every thread even when there are few tasks (RoIs or images).
struct ChannelSplit {
  int64_t blocks = 1;
  int64_t size = 0;

  ChannelSplit(int64_t tasks, int64_t channels) {
    const int64_t want = 4 * static_cast<int64_t>(at::get_num_threads());
    int64_t target = 1;
    if (tasks > 0 && tasks < want && channels > 1) target = std::min((want + tasks - 1) / tasks, channels);
    size = std::max<int64_t>((channels + target - 1) / target, 1);
    blocks = std::max<int64_t>((channels + size - 1) / size, 1);
  }
  int64_t begin(int64_t block) const { return block * size; }
  int64_t end(int64_t block, int64_t channels) const { return std::min(begin(block) + size, channels); }
};

// Bins of `lanes` channels of one RoI: each table entry is loaded once and used for every
// channel, which gives the inner loop `lanes` independent FMAs (NCHW reads are gathers, so
// this, not SIMD over pixels, is what keeps the ALUs busy).
template <int lanes, typename scalar_t, typename acc_t>
inline void pool_channels_nchw(const RoiTables<acc_t>& t, const scalar_t* src, int64_t plane, scalar_t* dst,
                               int64_t bins, const Shape& s) {
  for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
    for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
      acc_t sum[lanes] = {};
      for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
        const int64_t row = static_cast<int64_t>(t.rows.index[i]) * s.width;
        const acc_t wy = t.rows.weight[i] * t.inv_count;
        for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j) {
          const acc_t w = wy * t.cols.weight[j];
          const scalar_t* p = src + row + t.cols.index[j];
#pragma GCC unroll 8
          for (int q = 0; q < lanes; ++q) sum[q] += w * static_cast<acc_t>(p[q * plane]);
        }
      }
#pragma GCC unroll 8
      for (int q = 0; q < lanes; ++q) dst[q * bins + ph * s.pooled_w + pw] = static_cast<scalar_t>(sum[q]);
    }
  }
}

// An image is "dense" when its RoIs read each pixel several times over: then copying a block of
// its channels into an NHWC tile once and pooling with contiguous channel vectors beats the
// gathers of the NCHW layout. Sparse images (few small RoIs on a large map) keep the gathers.
inline bool dense_image(size_t rois_in_image, const Shape& s) {
  return static_cast<int64_t>(rois_in_image) * s.pooled_h * s.pooled_w * 4 >= s.height * s.width;
}

constexpr int64_t kTileChannels = 64;

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols. The NHWC tiles of
// the NCHW paths are built and taken apart with this, in blocks of 16 columns so that both
// sides stay in a few cache lines; float goes 4x4 through SSE registers, a few times faster
// than element by element (SSE2 is in every x86-64 clone, so no per-ISA copy is needed).
template <typename From, typename To>
void transpose(const From* src, int64_t src_stride, int64_t rows, int64_t cols, To* dst, int64_t dst_stride) {
  constexpr int64_t kBlock = 16;
  for (int64_t c0 = 0; c0 < cols; c0 += kBlock) {
    const int64_t c1 = std::min(c0 + kBlock, cols);
    int64_t r = 0;
#if defined(__SSE2__)
    if constexpr (std::is_same_v<From, float> && std::is_same_v<To, float>) {
      for (; r + 4 <= rows; r += 4) {
        const float* s = src + r * src_stride;
        int64_t c = c0;
        for (; c + 4 <= c1; c += 4) {
          __m128 a = _mm_loadu_ps(s + c), b = _mm_loadu_ps(s + src_stride + c);
          __m128 e = _mm_loadu_ps(s + 2 * src_stride + c), f = _mm_loadu_ps(s + 3 * src_stride + c);
          _MM_TRANSPOSE4_PS(a, b, e, f);
          _mm_storeu_ps(dst + c * dst_stride + r, a);
          _mm_storeu_ps(dst + (c + 1) * dst_stride + r, b);
          _mm_storeu_ps(dst + (c + 2) * dst_stride + r, e);
          _mm_storeu_ps(dst + (c + 3) * dst_stride + r, f);
        }
        for (; c < c1; ++c)
          for (int64_t q = r; q < r + 4; ++q) dst[c * dst_stride + q] = src[q * src_stride + c];
      }
    }
#endif
    for (; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) dst[c * dst_stride + r] = static_cast<To>(src[r * src_stride + c]);
  }
}

// Vectors of 32 bytes (GCC/Clang vector extensions): a clone for an ISA without them splits
// each into narrower registers.
template <typename T>
struct Vec {
  static constexpr int kWidth = 32 / sizeof(T);
  typedef T type __attribute__((vector_size(32)));
};

// One RoI pooled from channels-last pixels (an NHWC tile, or an NHWC input at a channel offset):
// pooled[b * nc + q] is the sum over the taps (i, j) of bin b, in table order, of
// (wy_i * wx_j * inv_count) * src[pixel(i, j) * pixel_stride + q], for q < nc. Channels go in
// register blocks of 8 vectors that stay in registers across all the taps of a bin (a call per
// tap that loads and stores the sums costs several times more). Each channel sees the same
// operations in the same order as a scalar loop, so every ISA gives the same bits. Half and
// bfloat16 sources are converted on load.
template <typename S, typename T>
inline void pool_bins_impl(const RoiTables<T>& t, const S* src, int64_t pixel_stride, int64_t nc, int64_t width,
                           int64_t pooled_h, int64_t pooled_w, T* pooled) {
  using V = typename Vec<T>::type;
  constexpr int64_t kW = Vec<T>::kWidth, kChunk = 8 * kW;
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      T* acc = pooled + (ph * pooled_w + pw) * nc;
      int64_t c = 0;
      for (; c + kChunk <= nc; c += kChunk) {
        V sum[8] = {};
        for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
          const int64_t row = static_cast<int64_t>(t.rows.index[i]) * width;
          for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j) {
            const T w = t.rows.weight[i] * t.cols.weight[j] * t.inv_count;
            const S* x = src + (row + t.cols.index[j]) * pixel_stride + c;
            for (int v = 0; v < 8; ++v) {
              V xv;
              if constexpr (std::is_same_v<S, T>) {
                std::memcpy(&xv, x + v * kW, sizeof(V));
              } else {
                for (int k = 0; k < kW; ++k) xv[k] = static_cast<T>(x[v * kW + k]);
              }
              sum[v] += w * xv;
            }
          }
        }
        std::memcpy(acc + c, sum, sizeof(sum));
      }
      for (; c < nc; ++c) {
        T sum = 0;
        for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
          const int64_t row = static_cast<int64_t>(t.rows.index[i]) * width;
          for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j)
            sum += t.rows.weight[i] * t.cols.weight[j] * t.inv_count *
                   static_cast<T>(src[(row + t.cols.index[j]) * pixel_stride + c]);
        }
        acc[c] = sum;
      }
    }
  }
}

template <typename S, typename T>
void pool_bins(const RoiTables<T>& t, const S* src, int64_t pixel_stride, int64_t nc, int64_t width,
               int64_t pooled_h, int64_t pooled_w, T* pooled) {
  pool_bins_impl(t, src, pixel_stride, nc, width, pooled_h, pooled_w, pooled);
}
DAPO_CPU_CLONES void pool_bins(const RoiTables<float>& t, const float* src, int64_t pixel_stride, int64_t nc,
                               int64_t width, int64_t pooled_h, int64_t pooled_w, float* pooled) {
  pool_bins_impl(t, src, pixel_stride, nc, width, pooled_h, pooled_w, pooled);
}
DAPO_CPU_CLONES void pool_bins(const RoiTables<double>& t, const double* src, int64_t pixel_stride, int64_t nc,
                               int64_t width, int64_t pooled_h, int64_t pooled_w, double* pooled) {
  pool_bins_impl(t, src, pixel_stride, nc, width, pooled_h, pooled_w, pooled);
}

// The backward of pool_bins on an NHWC tile: tile[pixel(i, j) * nc + q] += (wy_i * wx_j) * grads[b * nc + q] for
// every tap of every bin, bins and taps in table order, the bin's gradients held in registers.
template <typename T>
inline void scatter_tile_impl(const RoiTables<T>& t, const T* grads, int64_t nc, int64_t width, int64_t pooled_h,
                              int64_t pooled_w, T* tile) {
  using V = typename Vec<T>::type;
  constexpr int64_t kW = Vec<T>::kWidth, kChunk = 8 * kW;
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      const T* gv = grads + (ph * pooled_w + pw) * nc;
      int64_t c = 0;
      for (; c + kChunk <= nc; c += kChunk) {
        V g[8];
        std::memcpy(g, gv + c, sizeof(g));
        for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
          const int64_t row = static_cast<int64_t>(t.rows.index[i]) * width;
          for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j) {
            const T w = t.rows.weight[i] * t.cols.weight[j];
            T* x = tile + (row + t.cols.index[j]) * nc + c;
            for (int v = 0; v < 8; ++v) {
              V xv;
              std::memcpy(&xv, x + v * kW, sizeof(V));
              xv += w * g[v];
              std::memcpy(x + v * kW, &xv, sizeof(V));
            }
          }
        }
      }
      for (; c < nc; ++c) {
        for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
          const int64_t row = static_cast<int64_t>(t.rows.index[i]) * width;
          for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j)
            tile[(row + t.cols.index[j]) * nc + c] += t.rows.weight[i] * t.cols.weight[j] * gv[c];
        }
      }
    }
  }
}

DAPO_CPU_CLONES void scatter_tile(const RoiTables<float>& t, const float* grads, int64_t nc, int64_t width,
                                  int64_t pooled_h, int64_t pooled_w, float* tile) {
  scatter_tile_impl(t, grads, nc, width, pooled_h, pooled_w, tile);
}
DAPO_CPU_CLONES void scatter_tile(const RoiTables<double>& t, const double* grads, int64_t nc, int64_t width,
                                  int64_t pooled_h, int64_t pooled_w, double* tile) {
  scatter_tile_impl(t, grads, nc, width, pooled_h, pooled_w, tile);
}

// Tables of every RoI plus the RoIs of each image in their original order. A table takes well
// under a microsecond, so only thousands of RoIs are worth a parallel region (whose end waits for
// every thread, a scheduler slice when one is descheduled on a busy machine).
template <typename acc_t, typename scalar_t>
void build_all_tables(const scalar_t* rois, const Shape& s, int64_t batch_size, double scale, int sampling_ratio,
                      bool aligned, std::vector<RoiTables<acc_t>>& tables,
                      std::vector<std::vector<int64_t>>& rois_of_image) {
  tables.resize(s.rois);
  dapo_fast::parallel_for(0, s.rois, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r)
      tables[r].build(rois + r * 5, static_cast<acc_t>(scale), s.pooled_h, s.pooled_w, sampling_ratio, aligned,
                      s.height, s.width);
  });
  rois_of_image.assign(batch_size, {});
  for (int64_t r = 0; r < s.rois; ++r) rois_of_image[tables[r].batch].push_back(r);
}

template <typename scalar_t>
void forward_nchw(const scalar_t* input, const scalar_t* rois, scalar_t* out, const Shape& s, int64_t batch_size,
                  double scale, int sampling_ratio, bool aligned) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t plane = s.height * s.width;
  const int64_t bins = s.pooled_h * s.pooled_w;
  std::vector<RoiTables<acc_t>> tables;
  std::vector<std::vector<int64_t>> by_image;
  build_all_tables(rois, s, batch_size, scale, sampling_ratio, aligned, tables, by_image);
  std::vector<int64_t> dense, sparse_rois;
  for (int64_t n = 0; n < batch_size; ++n) {
    if (by_image[n].empty()) continue;
    if (dense_image(by_image[n].size(), s)) {
      dense.push_back(n);
    } else {
      sparse_rois.insert(sparse_rois.end(), by_image[n].begin(), by_image[n].end());
    }
  }

  // dense images: task = (image, block of kTileChannels channels)
  const int64_t tiles = (s.channels + kTileChannels - 1) / kTileChannels;
  dapo_fast::parallel_for(0, static_cast<int64_t>(dense.size()) * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> tile(plane * kTileChannels), pooled(bins * kTileChannels);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = dense[task / tiles];
      const int64_t c0 = (task % tiles) * kTileChannels;
      const int64_t nc = (c0 + kTileChannels < s.channels ? c0 + kTileChannels : s.channels) - c0;
      transpose(input + (n * s.channels + c0) * plane, plane, nc, plane, tile.data(), nc);
      for (int64_t r : by_image[n]) {
        pool_bins(tables[r], tile.data(), nc, nc, s.width, s.pooled_h, s.pooled_w, pooled.data());
        transpose(pooled.data(), nc, bins, nc, out + (r * s.channels + c0) * bins, bins);
      }
    }
  });

  // sparse images: task = (RoI, channel block), gathers straight from the NCHW planes
  const ChannelSplit split(static_cast<int64_t>(sparse_rois.size()), s.channels);
  const int64_t blocks = split.blocks;
  dapo_fast::parallel_for(0, static_cast<int64_t>(sparse_rois.size()) * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = sparse_rois[task / blocks];
      const RoiTables<acc_t>& t = tables[r];
      const int64_t c0 = split.begin(task % blocks);
      const int64_t c1 = split.end(task % blocks, s.channels);
      int64_t c = c0;
      for (; c + 8 <= c1; c += 8)
        pool_channels_nchw<8>(t, input + (t.batch * s.channels + c) * plane, plane, out + (r * s.channels + c) * bins,
                              bins, s);
      for (; c < c1; ++c)
        pool_channels_nchw<1>(t, input + (t.batch * s.channels + c) * plane, plane, out + (r * s.channels + c) * bins,
                              bins, s);
    }
  });
}

// input is NHWC in memory; out is [K, PH, PW, C] when out_nhwc, else [K, C, PH, PW]. Each task
// pools its channel block into a [bins][channels] scratch and stores it in the output's layout.
template <typename scalar_t>
void forward_nhwc(const scalar_t* input, const scalar_t* rois, scalar_t* out, const Shape& s, int64_t batch_size,
                  double scale, int sampling_ratio, bool aligned, bool out_nhwc) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t bins = s.pooled_h * s.pooled_w;
  std::vector<RoiTables<acc_t>> tables;
  std::vector<std::vector<int64_t>> by_image;
  build_all_tables(rois, s, batch_size, scale, sampling_ratio, aligned, tables, by_image);
  const ChannelSplit split(s.rois, s.channels);
  const int64_t blocks = split.blocks;
  dapo_fast::parallel_for(0, s.rois * blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> pooled(bins * split.size);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t r = task / blocks;
      const RoiTables<acc_t>& t = tables[r];
      const int64_t c0 = split.begin(task % blocks);
      const int64_t n = split.end(task % blocks, s.channels) - c0;
      pool_bins(t, input + t.batch * s.height * s.width * s.channels + c0, s.channels, n, s.width, s.pooled_h,
                s.pooled_w, pooled.data());
      if (out_nhwc) {
        for (int64_t b = 0; b < bins; ++b)
          std::copy_n(pooled.data() + b * n, n, out + (r * bins + b) * s.channels + c0);
      } else {
        transpose(pooled.data(), n, bins, n, out + (r * s.channels + c0) * bins, bins);
      }
    }
  });
}

// Scatter of one RoI's gradient into `lanes` channel planes (see pool_channels_nchw).
template <int lanes, typename scalar_t, typename acc_t>
inline void scatter_channels_nchw(const RoiTables<acc_t>& t, const scalar_t* g, int64_t bins, acc_t* dst,
                                  int64_t plane, const Shape& s) {
  for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
    for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
      acc_t gv[lanes];
#pragma GCC unroll 8
      for (int q = 0; q < lanes; ++q) gv[q] = static_cast<acc_t>(g[q * bins + ph * s.pooled_w + pw]) * t.inv_count;
      for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
        const int64_t row = static_cast<int64_t>(t.rows.index[i]) * s.width;
        const acc_t wy = t.rows.weight[i];
        for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j) {
          const acc_t w = wy * t.cols.weight[j];
          acc_t* p = dst + row + t.cols.index[j];
#pragma GCC unroll 8
          for (int q = 0; q < lanes; ++q) p[q * plane] += w * gv[q];
        }
      }
    }
  }
}

// grad is [K, C, PH, PW] contiguous; grad_input is [N, C, H, W] in acc_t, uninitialised. Tasks
// are (image, channel block): each owns its planes, writes all of them and visits that image's
// RoIs in order. Dense images accumulate into an NHWC tile with contiguous channel vectors and
// are transposed back once; sparse images (and those without RoIs) zero their planes and scatter
// straight into them, 8 channels per table entry.
template <typename scalar_t, typename acc_t>
void backward_nchw(const scalar_t* grad, const scalar_t* rois, acc_t* grad_input, const Shape& s, int64_t batch_size,
                   double scale, int sampling_ratio, bool aligned) {
  std::vector<RoiTables<acc_t>> tables;
  std::vector<std::vector<int64_t>> rois_of_image;
  build_all_tables(rois, s, batch_size, scale, sampling_ratio, aligned, tables, rois_of_image);
  const int64_t plane = s.height * s.width;
  const int64_t bins = s.pooled_h * s.pooled_w;
  const int64_t tiles = (s.channels + kTileChannels - 1) / kTileChannels;
  dapo_fast::parallel_for(0, batch_size * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> tile, grads(bins * kTileChannels);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / tiles;
      const int64_t c0 = (task % tiles) * kTileChannels;
      const int64_t nc = (c0 + kTileChannels < s.channels ? c0 + kTileChannels : s.channels) - c0;
      acc_t* dst = grad_input + (n * s.channels + c0) * plane;
      if (!dense_image(rois_of_image[n].size(), s)) {
        std::fill(dst, dst + nc * plane, acc_t(0));
        for (int64_t r : rois_of_image[n]) {
          const scalar_t* g = grad + (r * s.channels + c0) * bins;
          int64_t c = 0;
          for (; c + 8 <= nc; c += 8) scatter_channels_nchw<8>(tables[r], g + c * bins, bins, dst + c * plane, plane, s);
          for (; c < nc; ++c) scatter_channels_nchw<1>(tables[r], g + c * bins, bins, dst + c * plane, plane, s);
        }
        continue;
      }
      tile.assign(plane * nc, acc_t(0));
      for (int64_t r : rois_of_image[n]) {
        const RoiTables<acc_t>& t = tables[r];
        transpose(grad + (r * s.channels + c0) * bins, bins, nc, bins, grads.data(), nc);
        for (int64_t i = 0; i < bins * nc; ++i) grads[i] *= t.inv_count;
        scatter_tile(t, grads.data(), nc, s.width, s.pooled_h, s.pooled_w, tile.data());
      }
      transpose(tile.data(), nc, plane, nc, dst, plane);
    }
  });
}

// grad is [K, PH, PW, C] in memory; grad_input is [N, H, W, C] in acc_t, uninitialised: each
// task zeroes its channel slice of its image first.
template <typename scalar_t, typename acc_t>
void backward_nhwc(const scalar_t* grad, const scalar_t* rois, acc_t* grad_input, const Shape& s, int64_t batch_size,
                   double scale, int sampling_ratio, bool aligned) {
  std::vector<RoiTables<acc_t>> tables;
  std::vector<std::vector<int64_t>> rois_of_image;
  build_all_tables(rois, s, batch_size, scale, sampling_ratio, aligned, tables, rois_of_image);
  const ChannelSplit split(batch_size, s.channels);
  const int64_t blocks = split.blocks;
  dapo_fast::parallel_for(0, batch_size * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / blocks;
      const int64_t c0 = split.begin(task % blocks);
      const int64_t nc = split.end(task % blocks, s.channels) - c0;
      for (int64_t px = 0; px < s.height * s.width; ++px)
        std::fill_n(grad_input + (n * s.height * s.width + px) * s.channels + c0, nc, acc_t(0));
      for (int64_t r : rois_of_image[n]) {
        const RoiTables<acc_t>& t = tables[r];
        for (int64_t ph = 0; ph < s.pooled_h; ++ph) {
          for (int64_t pw = 0; pw < s.pooled_w; ++pw) {
            const scalar_t* g = grad + ((r * s.pooled_h + ph) * s.pooled_w + pw) * s.channels + c0;
            for (int i = t.rows.begin[ph]; i < t.rows.begin[ph + 1]; ++i) {
              const int64_t row = (n * s.height + t.rows.index[i]) * s.width;
              for (int j = t.cols.begin[pw]; j < t.cols.begin[pw + 1]; ++j) {
                const acc_t w = t.rows.weight[i] * t.cols.weight[j] * t.inv_count;
                accumulate(nc, w, g, grad_input + (row + t.cols.index[j]) * s.channels + c0);
              }
            }
          }
        }
      }
    }
  });
}

// Batch indices are read as int (truncation, like torchvision); anything outside [0, N) or NaN
// would read out of bounds, so it is an error here rather than silent garbage.
template <typename scalar_t>
void check_batch_indices(const scalar_t* rois, int64_t num_rois, int64_t batch_size) {
  for (int64_t r = 0; r < num_rois; ++r) {
    const double b = static_cast<double>(rois[r * 5]);
    TORCH_CHECK(b > -1.0 && b < static_cast<double>(batch_size), "rois[", r, ", 0] (batch index) is ", b,
                " but the input holds ", batch_size, " images");
  }
}

// A fresh large tensor is mmapped memory that nobody has touched: its first write faults in every
// 4 KiB page (and freeing it unmaps them all again), which at ReIR's size costs as much as the
// pooling. Transparent huge pages cut the faults 512-fold, but with THP in "madvise" mode (a common
// default) they must be asked for. Only the 2 MiB-aligned interior can be huge; the advice is a
// hint, so a refusal (old kernel, THP off, heap memory) changes nothing but the speed.
void advise_huge_pages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(1) << 21;
  const size_t bytes = t.storage().nbytes();
  if (bytes < 8 * kHuge) return;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(t.storage().data());
  const uintptr_t lo = (begin + kHuge - 1) & ~(kHuge - 1), hi = (begin + bytes) & ~(kHuge - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
#endif
}

struct CpuKernels {
  static void forward(const RoiAlignForward& p) {
    const at::Tensor& input = p.input;
    const Shape s{p.rois.size(0), input.size(1), input.size(2), input.size(3), p.pooled_height, p.pooled_width};
    advise_huge_pages(p.out_buffer);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "roi_align_forward_cpu", [&] {
      const scalar_t* rois = p.rois.data_ptr<scalar_t>();
      check_batch_indices(rois, s.rois, input.size(0));
      if (p.channels_last) {
        forward_nhwc(input.data_ptr<scalar_t>(), rois, p.out_buffer.data_ptr<scalar_t>(), s, input.size(0),
                     p.spatial_scale, p.sampling_ratio, p.aligned, p.out_channels_last);
      } else {
        forward_nchw(input.data_ptr<scalar_t>(), rois, p.out_buffer.data_ptr<scalar_t>(), s, input.size(0),
                     p.spatial_scale, p.sampling_ratio, p.aligned);
      }
    });
  }

  static constexpr bool kBackwardWritesAll = true;

  static void backward(const RoiAlignBackward& p) {
    advise_huge_pages(p.grad_input);
    const Shape s{p.rois.size(0), p.channels, p.height, p.width, p.pooled_height, p.pooled_width};
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.grad.scalar_type(), "roi_align_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      check_batch_indices(p.rois.data_ptr<scalar_t>(), s.rois, p.batch_size);
      auto kernel = p.channels_last ? backward_nhwc<scalar_t, acc_t> : backward_nchw<scalar_t, acc_t>;
      kernel(p.grad.data_ptr<scalar_t>(), p.rois.data_ptr<scalar_t>(), p.grad_input.data_ptr<acc_t>(), s,
             p.batch_size, p.spatial_scale, p.sampling_ratio, p.aligned);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_roi_align<CpuKernels>(m); }

}  // namespace dapo_fast
