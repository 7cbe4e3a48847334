// The one entry of the weighted smooth-L1 ops, registered for CPU and CUDA alike
// (weighted_smooth_l1_*entry<Kernels>): checks (the reduction code the kernels switch on
// included), contiguity, the outputs, then the device's kernel (Kernels::forward / backward, in
// weighted_smooth_l1_cpu.cpp and weighted_smooth_l1_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/checks.h"

namespace dapo_fast {

enum SmoothL1Reduction : int { kSmoothL1None = 0, kSmoothL1Sum = 1, kSmoothL1Mean = 2 };

inline void check_weighted_smooth_l1_args(const at::Tensor& input, const at::Tensor& target,
                                          const at::Tensor& weight, double beta, int64_t reduction) {
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
  TORCH_CHECK(beta >= 0, "beta must be >= 0, got ", beta);
}

struct WeightedSmoothL1 {
  at::Tensor input, target, weight;  // contiguous, one shape
  at::Tensor grad;  // backward only: contiguous, input's shape (none) or a scalar (sum / mean)
  at::Tensor out;   // forward: input's shape (none) or a scalar; backward: input's shape
  double beta = 0;
  int reduction = kSmoothL1None;
  bool done = false;  // backward of an empty input: nothing to write
};

inline WeightedSmoothL1 prepare_weighted_smooth_l1(const at::Tensor& input, const at::Tensor& target,
                                                   const at::Tensor& weight, double beta, int64_t reduction) {
  check_weighted_smooth_l1_args(input, target, weight, beta, reduction);
  WeightedSmoothL1 p;
  p.input = input.contiguous();
  p.target = target.contiguous();
  p.weight = weight.contiguous();
  p.beta = beta;
  p.reduction = static_cast<int>(reduction);
  // the mean of nothing is NaN (torch's rule), so even an empty input runs the reduction
  p.out = reduction == kSmoothL1None ? at::empty(p.input.sizes(), p.input.options())
                                     : at::empty({}, p.input.options());
  return p;
}

inline WeightedSmoothL1 prepare_weighted_smooth_l1_backward(const at::Tensor& grad, const at::Tensor& input,
                                                            const at::Tensor& target, const at::Tensor& weight,
                                                            double beta, int64_t reduction) {
  check_weighted_smooth_l1_args(input, target, weight, beta, reduction);
  check_same_dtype(input, "input", grad, "grad");
  check_same_device(input, "input", grad, "grad");
  if (reduction == kSmoothL1None) {
    TORCH_CHECK(grad.sizes() == input.sizes(), "grad must have input's shape for reduction none");
  } else {
    TORCH_CHECK(grad.numel() == 1, "grad must be a scalar for reduction sum / mean, got shape ", grad.sizes());
  }
  WeightedSmoothL1 p;
  p.input = input.contiguous();
  p.target = target.contiguous();
  p.weight = weight.contiguous();
  p.grad = reduction == kSmoothL1None ? grad.contiguous() : grad.reshape({}).contiguous();
  p.beta = beta;
  p.reduction = static_cast<int>(reduction);
  p.out = at::empty(p.input.sizes(), p.input.options());
  p.done = p.input.numel() == 0;
  return p;
}

template <typename Kernels>
at::Tensor weighted_smooth_l1_entry(const at::Tensor& input, const at::Tensor& target, const at::Tensor& weight,
                                    double beta, int64_t reduction) {
  const WeightedSmoothL1 p = prepare_weighted_smooth_l1(input, target, weight, beta, reduction);
  Kernels::forward(p);
  return p.out;
}

template <typename Kernels>
at::Tensor weighted_smooth_l1_backward_entry(const at::Tensor& grad, const at::Tensor& input, const at::Tensor& target,
                                             const at::Tensor& weight, double beta, int64_t reduction) {
  const WeightedSmoothL1 p = prepare_weighted_smooth_l1_backward(grad, input, target, weight, beta, reduction);
  if (!p.done) Kernels::backward(p);
  return p.out;
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_weighted_smooth_l1(torch::Library& m) {
  m.impl("weighted_smooth_l1", &weighted_smooth_l1_entry<Kernels>);
  m.impl("weighted_smooth_l1_backward", &weighted_smooth_l1_backward_entry<Kernels>);
}

}  // namespace dapo_fast
