// RoIAlign math shared by the CPU and CUDA kernels (torchvision semantics).
//
// A bilinear sample at (y, x) is separable: its weight on pixel (r, c) is wy(r) * wx(c), and a
// sample outside [-1, H] x [-1, W] contributes nothing, which is also a product of a y-test and
// an x-test. So everything here works on one axis at a time.
#pragma once
#include "../common/host_device.h"

namespace dapo_fast {

// A bin averages sampling_ratio^2 samples, a count the kernels hold in a 32-bit int; adaptive
// grids are capped at the same size (bins over 46340 feature pixels).
constexpr int kMaxSamplingRatio = 46340;

namespace roi_align_math {

// Where one RoI samples the feature map.
template <typename T>
struct RoiGeometry {
  int batch;     // image index (column 0 of the rois row)
  T start_h;     // top of the RoI in feature-map coordinates
  T start_w;     // left of the RoI
  T bin_h;       // height of one output bin
  T bin_w;       // width of one output bin
  int grid_h;    // samples per bin along y
  int grid_w;    // samples per bin along x
  T inv_count;   // 1 / (grid_h * grid_w): the bin value is the mean of its samples
};

// The adaptive grid, ceil(bin size) samples, without <cmath> so nvcc and the host compiler agree
// on every type: 0 for a NaN or infinite size (the RoI samples nothing, like a NaN box) and for a
// negative one, at most kMaxSamplingRatio (a plain float->int cast would be undefined behaviour).
template <typename T>
HOST_DEVICE int adaptive_grid(T v) {
  if (!(v - v == v - v) || !(v > static_cast<T>(0))) return 0;  // v - v is NaN for NaN and +-inf
  if (v > static_cast<T>(kMaxSamplingRatio)) return kMaxSamplingRatio;
  int i = static_cast<int>(v);
  return (static_cast<T>(i) < v) ? i + 1 : i;
}

// roi = [batch_index, x1, y1, x2, y2] in image coordinates.
template <typename T>
HOST_DEVICE RoiGeometry<T> roi_geometry(const T* roi, T spatial_scale, int pooled_height, int pooled_width,
                                        int sampling_ratio, bool aligned) {
  RoiGeometry<T> g;
  g.batch = static_cast<int>(roi[0]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0);
  g.start_w = roi[1] * spatial_scale - offset;
  g.start_h = roi[2] * spatial_scale - offset;
  T roi_w = roi[3] * spatial_scale - offset - g.start_w;
  T roi_h = roi[4] * spatial_scale - offset - g.start_h;
  if (!aligned) {
    // Legacy (aligned=False) RoIs are at least one pixel: malformed boxes are forced to 1x1
    // (a NaN size stays NaN, as torchvision's std::max and the reference's clamp leave it).
    roi_w = maximum(roi_w, static_cast<T>(1));
    roi_h = maximum(roi_h, static_cast<T>(1));
  }
  g.bin_h = roi_h / static_cast<T>(pooled_height);
  g.bin_w = roi_w / static_cast<T>(pooled_width);
  // Adaptive sampling: ceil(bin size) samples per bin when sampling_ratio <= 0 (negative-size
  // boxes with aligned=True sample nothing).
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_h / static_cast<T>(pooled_height));
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(roi_w / static_cast<T>(pooled_width));
  const int count = g.grid_h * g.grid_w;  // <= kMaxSamplingRatio^2 < 2^31
  g.inv_count = static_cast<T>(1) / static_cast<T>(count > 1 ? count : 1);
  return g;
}

// Coordinate of sample i (of `grid`) in bin p along one axis.
template <typename T>
HOST_DEVICE T sample_coord(T start, T bin, int p, int i, int grid) {
  return start + static_cast<T>(p) * bin + (static_cast<T>(i) + static_cast<T>(0.5)) * bin / static_cast<T>(grid);
}

// Bilinear interpolation along one axis: the two pixels a coordinate reads and their weights.
template <typename T>
struct AxisTaps {
  int low;
  int high;
  T w_low;
  T w_high;
  bool valid;  // false: the sample is outside [-1, size] (or NaN) and contributes 0
};

template <typename T>
HOST_DEVICE AxisTaps<T> axis_taps(T coord, int size) {
  AxisTaps<T> t;
  // Written as !(inside) so a NaN coordinate also counts as outside.
  if (!(coord >= static_cast<T>(-1) && coord <= static_cast<T>(size))) {
    t.low = t.high = 0;
    t.w_low = t.w_high = static_cast<T>(0);
    t.valid = false;
    return t;
  }
  if (coord <= static_cast<T>(0)) coord = static_cast<T>(0);
  t.low = static_cast<int>(coord);
  if (t.low >= size - 1) {
    t.low = t.high = size - 1;
    coord = static_cast<T>(t.low);
  } else {
    t.high = t.low + 1;
  }
  const T frac = coord - static_cast<T>(t.low);
  t.w_low = static_cast<T>(1) - frac;
  t.w_high = frac;
  t.valid = true;
  return t;
}

}  // namespace roi_align_math
}  // namespace dapo_fast
