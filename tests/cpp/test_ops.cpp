// The compiled ops called through the dispatcher (as Python does), against direct per-sample
// loops over the shared math, and the shared entries (<op>_prepare.h) refusing integers the
// kernels would narrow. Built with -fsanitize=address,undefined in CI, this is where an
// out-of-bounds access or UB in a CPU kernel shows up.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/parallel.h"
#include "pointing_game/resized_argmax_prepare.h"
#include "roi_align/roi_align_common.h"
#include "roi_align/roi_align_prepare.h"

using namespace dapo_fast::roi_align_math;

static int failures = 0;

static void expect_close(const at::Tensor& got, const at::Tensor& want, const char* what) {
  const double err = (got.to(at::kDouble) - want).abs().max().item<double>();
  if (!(err <= 1e-10)) {
    std::printf("FAIL %s: max abs error %.3g\n", what, err);
    ++failures;
  } else {
    std::printf("ok   %s (max abs error %.3g)\n", what, err);
  }
}

// torchvision's loop: every sample of every bin, four corner reads.
static at::Tensor direct_forward(const at::Tensor& x, const at::Tensor& rois, double scale, int ph_n, int pw_n,
                                 int sr, bool aligned) {
  const int64_t k_n = rois.size(0), c_n = x.size(1), h = x.size(2), w = x.size(3);
  at::Tensor out = at::zeros({k_n, c_n, ph_n, pw_n}, at::kDouble);
  auto xa = x.accessor<double, 4>();
  auto ra = rois.accessor<double, 2>();
  auto oa = out.accessor<double, 4>();
  for (int64_t k = 0; k < k_n; ++k) {
    const double roi[5] = {ra[k][0], ra[k][1], ra[k][2], ra[k][3], ra[k][4]};
    const RoiGeometry<double> g = roi_geometry(roi, scale, ph_n, pw_n, sr, aligned);
    for (int64_t c = 0; c < c_n; ++c)
      for (int ph = 0; ph < ph_n; ++ph)
        for (int pw = 0; pw < pw_n; ++pw) {
          double sum = 0;
          for (int iy = 0; iy < g.grid_h; ++iy) {
            const AxisTaps<double> ty = axis_taps(sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h), (int)h);
            for (int ix = 0; ix < g.grid_w; ++ix) {
              const AxisTaps<double> tx = axis_taps(sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w), (int)w);
              if (!ty.valid || !tx.valid) continue;
              sum += ty.w_low * (tx.w_low * xa[g.batch][c][ty.low][tx.low] + tx.w_high * xa[g.batch][c][ty.low][tx.high]) +
                     ty.w_high * (tx.w_low * xa[g.batch][c][ty.high][tx.low] + tx.w_high * xa[g.batch][c][ty.high][tx.high]);
            }
          }
          oa[k][c][ph][pw] = sum * g.inv_count;
        }
  }
  return out;
}

static at::Tensor direct_backward(const at::Tensor& grad, const at::Tensor& rois, double scale, int64_t n_n,
                                  int64_t c_n, int64_t h, int64_t w, int sr, bool aligned) {
  const int ph_n = (int)grad.size(2), pw_n = (int)grad.size(3);
  at::Tensor gi = at::zeros({n_n, c_n, h, w}, at::kDouble);
  auto ga = grad.accessor<double, 4>();
  auto ra = rois.accessor<double, 2>();
  auto ia = gi.accessor<double, 4>();
  for (int64_t k = 0; k < rois.size(0); ++k) {
    const double roi[5] = {ra[k][0], ra[k][1], ra[k][2], ra[k][3], ra[k][4]};
    const RoiGeometry<double> g = roi_geometry(roi, scale, ph_n, pw_n, sr, aligned);
    for (int64_t c = 0; c < c_n; ++c)
      for (int ph = 0; ph < ph_n; ++ph)
        for (int pw = 0; pw < pw_n; ++pw) {
          const double gv = ga[k][c][ph][pw] * g.inv_count;
          for (int iy = 0; iy < g.grid_h; ++iy) {
            const AxisTaps<double> ty = axis_taps(sample_coord(g.start_h, g.bin_h, ph, iy, g.grid_h), (int)h);
            for (int ix = 0; ix < g.grid_w; ++ix) {
              const AxisTaps<double> tx = axis_taps(sample_coord(g.start_w, g.bin_w, pw, ix, g.grid_w), (int)w);
              if (!ty.valid || !tx.valid) continue;
              ia[g.batch][c][ty.low][tx.low] += gv * ty.w_low * tx.w_low;
              ia[g.batch][c][ty.low][tx.high] += gv * ty.w_low * tx.w_high;
              ia[g.batch][c][ty.high][tx.low] += gv * ty.w_high * tx.w_low;
              ia[g.batch][c][ty.high][tx.high] += gv * ty.w_high * tx.w_high;
            }
          }
        }
  }
  return gi;
}

// f() must throw a c10::Error whose message names `argument`.
template <typename F>
static void expect_refused(F&& f, const char* argument, const char* what) {
  try {
    f();
  } catch (const c10::Error& e) {
    if (std::string(e.what_without_backtrace()).find(argument) == std::string::npos) {
      std::printf("FAIL %s: error does not name %s: %s\n", what, argument, e.what_without_backtrace());
      ++failures;
    } else {
      std::printf("ok   %s refused\n", what);
    }
    return;
  }
  std::printf("FAIL %s: accepted\n", what);
  ++failures;
}

// Integers the kernels hold in a 32-bit int: a narrowing cast would turn 2^32 + 3 into 3 and
// -2^31 - 1 into 2^31 - 1 (an endless sampling loop), so the shared entries refuse them.
static void test_narrowed_integers() {
  using dapo_fast::prepare_resized_argmax;
  using dapo_fast::prepare_roi_align_backward;
  using dapo_fast::prepare_roi_align_forward;
  const int64_t wraps_to_3 = (int64_t(1) << 32) + 3, below_int = -(int64_t(1) << 31) - 1;
  const at::Tensor x = at::randn({1, 2, 4, 4}, at::kDouble);
  const at::Tensor rois = at::tensor({0.0, 0.0, 0.0, 2.0, 2.0}, at::kDouble).view({1, 5});
  const at::Tensor grad = at::randn({1, 2, 2, 2}, at::kDouble);
  for (int64_t bad : {wraps_to_3, below_int}) {
    expect_refused([&] { prepare_roi_align_forward(x, rois, 1.0, 2, 2, bad, true); }, "sampling_ratio",
                   "roi_align forward sampling_ratio out of int range");
    expect_refused([&] { prepare_roi_align_backward(grad, rois, 1.0, 2, 2, 1, 2, 4, 4, bad, true); }, "sampling_ratio",
                   "roi_align backward sampling_ratio out of int range");
  }
  // sampling_ratio^2 samples per bin must fit an int too
  expect_refused([&] { prepare_roi_align_forward(x, rois, 1.0, 2, 2, 46341, true); }, "sampling_ratio",
                 "roi_align sampling_ratio^2 past int");
  expect_refused([&] { prepare_roi_align_forward(x, rois, 1.0, wraps_to_3, 2, 2, true); }, "pooled_height",
                 "roi_align pooled_height out of int range");
  expect_refused([&] { prepare_roi_align_forward(x, rois, 1.0, 2, wraps_to_3, 2, true); }, "pooled_width",
                 "roi_align pooled_width out of int range");
  // refused before the [1, 2, 2^32 + 3, 4] gradient buffer is allocated
  expect_refused([&] { prepare_roi_align_backward(grad, rois, 1.0, 2, 2, 1, 2, wraps_to_3, 4, 2, true); }, "height",
                 "roi_align backward height out of int range");
  expect_refused([&] { prepare_roi_align_backward(grad, rois, 1.0, 2, 2, 1, 2, 4, wraps_to_3, 2, true); }, "width",
                 "roi_align backward width out of int range");
  // an element count past int64, before any allocation
  expect_refused([&] { prepare_roi_align_backward(grad, rois, 1.0, 2, 2, int64_t(1) << 62, 2, 4, 4, 2, true); },
                 "batch_size", "roi_align backward input gradient past int64 elements");
  expect_refused(
      [&] {
        prepare_resized_argmax(at::rand({1, 4, 4}, at::kDouble),
                               at::tensor({wraps_to_3, int64_t(5)}, at::kLong).view({1, 2}), false);
      },
      "sizes", "resized_argmax output size out of int range");
  // the same refusal through the dispatcher, as torch.ops.dapo_fast.roi_align sees it
  auto forward = c10::Dispatcher::singleton()
                     .findSchemaOrThrow("dapo_fast::roi_align", "")
                     .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, c10::SymInt, c10::SymInt,
                                       int64_t, bool, bool)>();
  for (int64_t bad : {wraps_to_3, below_int})
    expect_refused([&] { forward.call(x, rois, 1.0, 2, 2, bad, true, false); }, "sampling_ratio",
                   "dapo_fast::roi_align sampling_ratio out of int range");
  // in range, the entry answers: sampling_ratio 3 and any non-positive (adaptive) value
  for (int64_t ok : {int64_t(3), int64_t(0), int64_t(-5)}) {
    const dapo_fast::RoiAlignForward p = prepare_roi_align_forward(x, rois, 1.0, 2, 2, ok, true);
    if (p.out.sizes() != at::IntArrayRef({1, 2, 2, 2})) {
      std::printf("FAIL roi_align prepare with sampling_ratio %lld: output %s\n", static_cast<long long>(ok),
                  c10::str(p.out.sizes()).c_str());
      ++failures;
    }
  }
}

// dapo_fast::parallel_for (every CPU kernel's scheduler): each index exactly once whatever the
// range, grain and thread count; nested calls run inline; an exception in any chunk reaches the caller.
static void test_parallel_for() {
  const int before = failures;
  for (int threads : {1, 2, 3}) {
    at::set_num_threads(threads);
    for (int64_t n : {0, 1, 7, 64, 1000, 4097})
      for (int64_t grain : {1, 5, 100, 100000}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n + 2));
        for (auto& s : seen) s = 0;
        dapo_fast::parallel_for(1, n + 1, grain, [&](int64_t b, int64_t e) {
          if (b >= e) seen[0] += 100;  // an empty chunk is a scheduling bug
          for (int64_t i = b; i < e; ++i) ++seen[static_cast<size_t>(i)];
        });
        bool once = seen[0] == 0 && (n + 1 >= static_cast<int64_t>(seen.size()) || seen[n + 1] == 0);
        for (int64_t i = 1; i <= n; ++i) once = once && seen[static_cast<size_t>(i)] == 1;
        if (!once) {
          std::printf("FAIL parallel_for: threads %d n %lld grain %lld\n", threads, (long long)n, (long long)grain);
          ++failures;
        }
      }
    std::atomic<int64_t> inner{0};
    dapo_fast::parallel_for(0, 64, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        dapo_fast::parallel_for(0, 10, 1, [&](int64_t b2, int64_t e2) { inner += e2 - b2; });
    });
    bool threw = false;
    try {
      dapo_fast::parallel_for(0, 1000, 1, [&](int64_t b, int64_t e) {
        if (b <= 500 && 500 < e) throw std::runtime_error("chunk 500");
      });
    } catch (const std::exception&) {
      threw = true;
    }
    if (inner != 640 || !threw) {
      std::printf("FAIL parallel_for: threads %d nested %lld threw %d\n", threads, (long long)inner.load(), threw);
      ++failures;
    }
  }
  at::set_num_threads(2);
  if (failures == before) std::printf("ok   parallel_for\n");
}

int main() {
  at::manual_seed(0);
  test_parallel_for();
  auto forward = c10::Dispatcher::singleton()
                     .findSchemaOrThrow("dapo_fast::roi_align", "")
                     .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, c10::SymInt, c10::SymInt,
                                       int64_t, bool, bool)>();
  auto backward = c10::Dispatcher::singleton()
                      .findSchemaOrThrow("dapo_fast::roi_align_backward", "")
                      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, c10::SymInt, c10::SymInt,
                                        c10::SymInt, c10::SymInt, c10::SymInt, c10::SymInt, int64_t, bool)>();
  const int64_t n = 3, c = 10, h = 9, w = 11;
  for (int num_rois : {1, 40}) {  // sparse (gather path) and dense images (NHWC tile path)
    at::Tensor x = at::randn({n, c, h, w}, at::kDouble);
    at::Tensor boxes = at::rand({num_rois, 4}, at::kDouble) * 30 - 6;  // partly outside the map too
    boxes.narrow(1, 2, 2).add_(boxes.narrow(1, 0, 2).abs());
    at::Tensor rois = at::cat({at::randint(0, n, {num_rois, 1}, at::kDouble), boxes}, 1);
    for (bool aligned : {false, true})
      for (int sr : {-1, 2}) {
        for (bool channels_last : {false, true}) {
          at::Tensor xi = channels_last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
          for (bool keep_channels_last : {false, true})  // the output's layout, the same numbers
            expect_close(forward.call(xi, rois, 0.5, 3, 4, sr, aligned, keep_channels_last),
                         direct_forward(x, rois, 0.5, 3, 4, sr, aligned), "roi_align forward");
          at::Tensor grad = at::randn({num_rois, c, 3, 4}, at::kDouble);
          at::Tensor gi = channels_last ? grad.contiguous(at::MemoryFormat::ChannelsLast) : grad;
          expect_close(backward.call(gi, rois, 0.5, 3, 4, n, c, h, w, sr, aligned),
                       direct_backward(grad, rois, 0.5, n, c, h, w, sr, aligned), "roi_align backward");
        }
      }
  }
  // a batch index past the input is an error, not an out-of-bounds read
  bool threw = false;
  try {
    forward.call(at::randn({1, 2, 4, 4}, at::kDouble), at::tensor({5.0, 0.0, 0.0, 2.0, 2.0}, at::kDouble).view({1, 5}),
                 1.0, 2, 2, 2, true, false);
  } catch (const c10::Error&) {
    threw = true;
  }
  if (!threw) {
    std::printf("FAIL: out-of-range batch index did not raise\n");
    ++failures;
  }
  test_narrowed_integers();
  if (failures) {
    std::printf("%d failure(s)\n", failures);
    return EXIT_FAILURE;
  }
  std::printf("ops vs direct loops: all checks passed\n");
  return EXIT_SUCCESS;
}
