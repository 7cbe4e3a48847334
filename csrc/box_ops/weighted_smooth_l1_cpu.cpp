// weighted_smooth_l1 CPU kernels. The reductions sum fixed-size chunks (independent of the
// thread count) in double and add the chunk sums in order: bitwise deterministic.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "box_ops_checks.h"

namespace dapo_fast {
namespace {

constexpr int64_t kChunk = 4096;

void check_args(const at::Tensor& input, const at::Tensor& target, const at::Tensor& weight, int64_t reduction) {
  check_floating(input, "input");
  TORCH_CHECK(target.sizes() == input.sizes(), "target must have input's shape ", input.sizes(), ", got ",
              target.sizes());
  TORCH_CHECK(weight.sizes() == input.sizes(), "weight must have input's shape ", input.sizes(), ", got ",
              weight.sizes());
  check_same_dtype(input, "input", target, "target");
  check_same_dtype(input, "input", weight, "weight");
  check_same_device(input, "input", target, "target");
  check_same_device(input, "input", weight, "weight");
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "reduction must be 0 (none), 1 (sum) or 2 (mean), got ", reduction);
}

at::Tensor weighted_smooth_l1_cpu(const at::Tensor& input_in, const at::Tensor& target_in, const at::Tensor& weight_in,
                                  double beta, int64_t reduction) {
  check_args(input_in, target_in, weight_in, reduction);
  TORCH_CHECK(beta >= 0, "beta must be >= 0, got ", beta);
  const at::Tensor x = input_in.contiguous(), y = target_in.contiguous(), w = weight_in.contiguous();
  const int64_t n = x.numel();
  at::Tensor out = reduction == 0 ? at::empty(x.sizes(), x.options()) : at::empty({}, x.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "weighted_smooth_l1_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *py = y.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    const acc_t b = static_cast<acc_t>(beta);
    auto term = [&](int64_t i) {
      return static_cast<acc_t>(pw[i]) *
             box_math::smooth_l1(static_cast<acc_t>(px[i]) - static_cast<acc_t>(py[i]), b);
    };
    if (reduction == 0) {
      scalar_t* po = out.data_ptr<scalar_t>();
      at::parallel_for(0, n, kChunk, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) po[i] = static_cast<scalar_t>(term(i));
      });
      return;
    }
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    std::vector<double> partial(chunks, 0.0);
    at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
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
  return out;
}

at::Tensor weighted_smooth_l1_backward_cpu(const at::Tensor& grad_in, const at::Tensor& input_in,
                                           const at::Tensor& target_in, const at::Tensor& weight_in, double beta,
                                           int64_t reduction) {
  check_args(input_in, target_in, weight_in, reduction);
  const at::Tensor x = input_in.contiguous(), y = target_in.contiguous(), w = weight_in.contiguous();
  const at::Tensor g = reduction == 0 ? grad_in.contiguous() : grad_in.reshape({});
  TORCH_CHECK(reduction != 0 || g.sizes() == x.sizes(), "grad must have input's shape for reduction none");
  const int64_t n = x.numel();
  at::Tensor out = at::empty(x.sizes(), x.options());
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "weighted_smooth_l1_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *px = x.data_ptr<scalar_t>(), *py = y.data_ptr<scalar_t>(), *pw = w.data_ptr<scalar_t>();
    const scalar_t* pg = g.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const acc_t b = static_cast<acc_t>(beta);
    const acc_t scale = reduction == 2 ? acc_t(1) / static_cast<acc_t>(n) : acc_t(1);
    at::parallel_for(0, n, kChunk, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        const acc_t gi = static_cast<acc_t>(reduction == 0 ? pg[i] : pg[0]) * scale;
        po[i] = static_cast<scalar_t>(gi * static_cast<acc_t>(pw[i]) *
                                      box_math::smooth_l1_grad(static_cast<acc_t>(px[i]) - static_cast<acc_t>(py[i]), b));
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("weighted_smooth_l1", &weighted_smooth_l1_cpu);
  m.impl("weighted_smooth_l1_backward", &weighted_smooth_l1_backward_cpu);
}

}  // namespace dapo_fast
