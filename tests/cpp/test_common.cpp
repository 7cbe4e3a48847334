// The HOST_DEVICE math of csrc/*/..._common.h, checked on the host (no torch): the CUDA kernels
// compile the same functions, so this covers their arithmetic too.
#include <cmath>
#include <limits>
#include <cstdio>
#include <cstdlib>

#include "roi_align/roi_align_common.h"

static int failures = 0;

#define EXPECT_NEAR(a, b, tol)                                                                        \
  do {                                                                                                \
    const double _a = (a), _b = (b);                                                                  \
    if (!(std::fabs(_a - _b) <= (tol))) {                                                             \
      std::printf("FAIL %s:%d: %s = %.17g, expected %.17g\n", __FILE__, __LINE__, #a, _a, _b);        \
      ++failures;                                                                                     \
    }                                                                                                 \
  } while (0)
#define EXPECT_TRUE(c)                                                     \
  do {                                                                     \
    if (!(c)) {                                                            \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #c);             \
      ++failures;                                                          \
    }                                                                      \
  } while (0)

using namespace dapo_fast::roi_align_math;

static void test_axis_taps() {
  // interior: weights split by the fractional part
  AxisTaps<double> t = axis_taps(2.25, 10);
  EXPECT_TRUE(t.valid && t.low == 2 && t.high == 3);
  EXPECT_NEAR(t.w_low, 0.75, 1e-15);
  EXPECT_NEAR(t.w_high, 0.25, 1e-15);
  // in [-1, 0]: clamps to pixel 0
  t = axis_taps(-0.5, 10);
  EXPECT_TRUE(t.valid && t.low == 0 && t.high == 1);
  EXPECT_NEAR(t.w_low, 1.0, 0);
  // the last row reads itself only
  t = axis_taps(9.6, 10);
  EXPECT_TRUE(t.valid && t.low == 9 && t.high == 9);
  EXPECT_NEAR(t.w_low + t.w_high, 1.0, 1e-15);
  // exactly on the borders -1 and size: inside; beyond: outside; NaN: outside
  EXPECT_TRUE(axis_taps(-1.0, 10).valid);
  EXPECT_TRUE(axis_taps(10.0, 10).valid);
  EXPECT_TRUE(!axis_taps(-1.0001, 10).valid);
  EXPECT_TRUE(!axis_taps(10.0001, 10).valid);
  EXPECT_TRUE(!axis_taps(std::nan(""), 10).valid);
  // a one-pixel axis never reads past it
  t = axis_taps(0.7, 1);
  EXPECT_TRUE(t.valid && t.low == 0 && t.high == 0);
}

static void test_geometry() {
  const double roi[5] = {1.0, 16.0, 32.0, 48.0, 96.0};
  RoiGeometry<double> g = roi_geometry(roi, 1.0 / 16, 2, 2, -1, true);
  EXPECT_TRUE(g.batch == 1);
  EXPECT_NEAR(g.start_w, 0.5, 1e-15);
  EXPECT_NEAR(g.start_h, 1.5, 1e-15);
  EXPECT_NEAR(g.bin_w, 1.0, 1e-15);
  EXPECT_NEAR(g.bin_h, 2.0, 1e-15);
  EXPECT_TRUE(g.grid_w == 1 && g.grid_h == 2);  // adaptive: ceil(bin size)
  EXPECT_NEAR(g.inv_count, 0.5, 1e-15);
  // aligned=False forces at least one pixel; a fixed sampling ratio wins over adaptive
  const double tiny[5] = {0.0, 3.0, 3.0, 3.1, 3.1};
  g = roi_geometry(tiny, 1.0, 7, 7, 2, false);
  EXPECT_NEAR(g.bin_w * 7, 1.0, 1e-15);
  EXPECT_TRUE(g.grid_w == 2 && g.grid_h == 2);
  EXPECT_NEAR(g.inv_count, 0.25, 1e-15);
  // a negative-size box with aligned=True samples nothing (grid 0, count clamped to 1)
  const double negative[5] = {0.0, 10.0, 10.0, 2.0, 2.0};
  g = roi_geometry(negative, 1.0, 2, 2, -1, true);
  EXPECT_TRUE(g.grid_w == 0 && g.grid_h == 0);
  EXPECT_NEAR(g.inv_count, 1.0, 0);
  // NaN and huge extents do not hit undefined float->int conversions
  // (adaptive grid: 0 for NaN, infinite or non-positive sizes, capped at kMaxSamplingRatio)
  EXPECT_TRUE(adaptive_grid(std::nan("")) == 0);
  EXPECT_TRUE(adaptive_grid(std::numeric_limits<double>::infinity()) == 0);
  EXPECT_TRUE(adaptive_grid(1e300) == dapo_fast::kMaxSamplingRatio);
  EXPECT_TRUE(adaptive_grid(-2.5) == 0 && adaptive_grid(2.5) == 3 && adaptive_grid(3.0) == 3);
  // sample coordinates: centres of the grid cells of a bin
  EXPECT_NEAR(sample_coord(0.5, 2.0, 1, 0, 2), 3.0, 1e-15);
  EXPECT_NEAR(sample_coord(0.5, 2.0, 1, 1, 2), 4.0, 1e-15);
}

int main() {
  test_axis_taps();
  test_geometry();
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("common math: all checks passed\n");
  return EXIT_SUCCESS;
}
