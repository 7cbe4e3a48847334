// weighted_smooth_l1 CPU kernels. The reductions sum fixed-size chunks (independent of the
// thread count) in double and add the chunk sums in order: bitwise deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "weighted_smooth_l1_common.h"
#include "weighted_smooth_l1_prepare.h"

namespace dapo_fast {
namespace {

constexpr int64_t kChunk = 4096;

struct CpuKernels {
  static void forward(const WeightedSmoothL1& p);
  static void backward(const WeightedSmoothL1& p);
};

void CpuKernels::forward(const WeightedSmoothL1& p) {
  const at::Tensor &x = p.input, &y = p.target, &w = p.weight, &out = p.out;
  const int64_t n = x.numel();
  const double beta = p.beta;
  const int reduction = p.reduction;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "weighted_smooth_l1_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *py = y.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    const acc_t b = static_cast<acc_t>(beta);
    auto term = [&](int64_t i) {
      return static_cast<acc_t>(pw[i]) *
             smooth_l1_math::smooth_l1(static_cast<acc_t>(px[i]) - static_cast<acc_t>(py[i]), b);
    };
    if (reduction == 0) {
      scalar_t* po = out.data_ptr<scalar_t>();
      dapo_fast::parallel_for(0, n, grain_for(10), [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) po[i] = static_cast<scalar_t>(term(i));
      });
      return;
    }
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);
    dapo_fast::parallel_for(0, chunks, grain_for(10 * kChunk), [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        double s = 0.0;
        const int64_t stop = (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
        for (int64_t i = c * kChunk; i < stop; ++i) s += static_cast<double>(term(i));
        partial[c] = s;
      }
    });
    double total = 0.0;
    for (double s : partial) total += s;
    if (reduction == 2) total = n > 0 ? total / static_cast<double>(n) : NAN;  // torch: mean of nothing is NaN
    out.fill_(total);
  });
}

void CpuKernels::backward(const WeightedSmoothL1& p) {
  const at::Tensor &x = p.input, &y = p.target, &w = p.weight, &g = p.grad, &out = p.out;
  const int64_t n = x.numel();
  const double beta = p.beta;
  const int reduction = p.reduction;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "weighted_smooth_l1_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *py = y.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    const scalar_t* pg = g.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const acc_t b = static_cast<acc_t>(beta);
    const acc_t scale = reduction == 2 ? acc_t(1) / static_cast<acc_t>(n) : acc_t(1);
    dapo_fast::parallel_for(0, n, grain_for(10), [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t gi = static_cast<acc_t>(reduction == 0 ? pg[i] : pg[0]) * scale;
        const acc_t diff = static_cast<acc_t>(px[i]) - static_cast<acc_t>(py[i]);
        po[i] = static_cast<scalar_t>(gi * static_cast<acc_t>(pw[i]) * smooth_l1_math::smooth_l1_grad(diff, b));
      }
    });
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_weighted_smooth_l1<CpuKernels>(m); }

}  // namespace dapo_fast
