// The one entry of the cross_attention_probs_mean ops, registered for CPU and CUDA alike
// (probs_mean_*entry<Kernels>): checks, the operands in the compute type of the device's kernels
// (Kernels::kTypes) with unit stride along d, the outputs and the answers that need no kernel,
// then the device's kernel (Kernels::forward / backward, in cross_attention_probs_mean_cpu.cpp and
// cross_attention_probs_mean_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <optional>
#include <tuple>

#include "../common/checks.h"

namespace dapo_fast {

inline void check_probs_mean_args(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& key_bias) {
  check_dim(q, 4, "q");
  check_dim(k, 4, "k");
  check_floating(q, "q");
  check_same_dtype(q, "q", k, "k");
  check_same_device(q, "q", k, "k");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3),
              "k must have shape [B, heads, T, d] matching q [B, heads, HW, d] = ", q.sizes(), ", got ", k.sizes());
  if (key_bias.has_value() && key_bias->defined()) {
    const at::Tensor& b = *key_bias;
    check_dim(b, 2, "key_bias");
    TORCH_CHECK(b.size(0) == q.size(0) && b.size(1) == k.size(2), "key_bias must have shape [B, T] = [", q.size(0),
                ", ", k.size(2), "], got ", b.sizes());
    check_same_device(q, "q", b, "key_bias");
    check_floating(b, "key_bias");
  }
}

inline void check_probs_mean_out(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k, const char* name) {
  check_dim(out, 3, name);
  TORCH_CHECK(out.size(0) == q.size(0) && out.size(1) == q.size(2) && out.size(2) == k.size(2), name,
              " must have shape [B, HW, T] = [", q.size(0), ", ", q.size(2), ", ", k.size(2), "], got ", out.sizes());
  check_same_device(q, "q", out, name);
  check_same_dtype(q, "q", out, name);
}

struct ProbsMeanInputs {
  at::Tensor q, k;  // compute type, unit stride along d: q [B, H, HW, d], k [B, H, T, d]
  at::Tensor bias;  // [B, T] contiguous in the compute type, or undefined
  double scale = 1, weight = 1;
};

// (after the checks)
inline ProbsMeanInputs probs_mean_inputs(const at::Tensor& q, const at::Tensor& k, double scale,
                                         const std::optional<at::Tensor>& key_bias, double weight,
                                         KernelTypes kernels) {
  const at::ScalarType type = compute_type(q.scalar_type(), kernels);
  auto operand = [&](const at::Tensor& t) {
    const at::Tensor c = t.to(type);
    return c.stride(-1) == 1 ? c : c.contiguous();
  };
  ProbsMeanInputs in{operand(q), operand(k), at::Tensor(), scale, weight};
  if (key_bias.has_value() && key_bias->defined()) in.bias = key_bias->to(type).contiguous();
  return in;
}

// True when out already holds the answer: it is empty, or there is no head to average (NaN, like
// torch.mean of nothing).
inline bool probs_mean_without_kernel(const at::Tensor& out, const at::Tensor& q) {
  if (out.numel() == 0) return true;
  if (q.size(1) != 0) return false;
  out.fill_(std::numeric_limits<double>::quiet_NaN());
  return true;
}

struct ProbsMeanForward {
  ProbsMeanInputs in;
  at::Tensor out;  // [B, HW, T] in the compute type
  at::ScalarType dtype;
  bool done = false;  // out already holds the answer: empty, or NaN without heads

  at::Tensor result() const { return out.to(dtype); }
};

inline ProbsMeanForward prepare_probs_mean(const at::Tensor& q, const at::Tensor& k, double scale,
                                           const std::optional<at::Tensor>& key_bias, double weight,
                                           KernelTypes kernels) {
  check_probs_mean_args(q, k, key_bias);
  ProbsMeanForward p;
  p.dtype = q.scalar_type();
  p.out = at::empty({q.size(0), q.size(2), k.size(2)}, q.options().dtype(compute_type(p.dtype, kernels)));
  p.done = probs_mean_without_kernel(p.out, q);
  if (!p.done) p.in = probs_mean_inputs(q, k, scale, key_bias, weight, kernels);
  return p;
}

struct ProbsMeanAccumulate {
  ProbsMeanInputs in;
  bool done = false;         // out already holds the answer: empty, or NaN without heads
  bool add_forward = false;  // the kernels do not take out's dtype: add the forward's result instead
};

inline ProbsMeanAccumulate prepare_probs_mean_accumulate(const at::Tensor& out, const at::Tensor& q,
                                                         const at::Tensor& k, double scale,
                                                         const std::optional<at::Tensor>& key_bias, double weight,
                                                         KernelTypes kernels) {
  check_probs_mean_args(q, k, key_bias);
  check_probs_mean_out(out, q, k, "out");
  ProbsMeanAccumulate p;
  p.done = probs_mean_without_kernel(out, q);
  if (p.done) return p;
  p.add_forward = compute_type(q.scalar_type(), kernels) != q.scalar_type();
  if (!p.add_forward) p.in = probs_mean_inputs(q, k, scale, key_bias, weight, kernels);
  return p;
}

struct ProbsMeanBackward {
  ProbsMeanInputs in;
  at::Tensor grad;    // [B, HW, T] contiguous, compute type
  at::Tensor dq, dk;  // contiguous [B, H, HW, d] / [B, H, T, d], compute type
  at::ScalarType dtype;
  bool done = false;  // nothing to sum over: dq, dk are zeros

  std::tuple<at::Tensor, at::Tensor> result() const { return {dq.to(dtype), dk.to(dtype)}; }
};

inline ProbsMeanBackward prepare_probs_mean_backward(const at::Tensor& grad, const at::Tensor& q, const at::Tensor& k,
                                                     double scale, const std::optional<at::Tensor>& key_bias,
                                                     double weight, KernelTypes kernels) {
  check_probs_mean_args(q, k, key_bias);
  check_dim(grad, 3, "grad");
  TORCH_CHECK(grad.size(0) == q.size(0) && grad.size(1) == q.size(2) && grad.size(2) == k.size(2),
              "grad must have shape [B, HW, T], got ", grad.sizes());
  check_same_device(q, "q", grad, "grad");
  ProbsMeanBackward p;
  p.dtype = q.scalar_type();
  p.in = probs_mean_inputs(q, k, scale, key_bias, weight, kernels);
  p.grad = grad.to(p.in.q.scalar_type()).contiguous();
  p.dq = at::empty(p.in.q.sizes(), p.in.q.options());
  p.dk = at::empty(p.in.k.sizes(), p.in.k.options());
  if (q.size(0) == 0 || q.size(1) == 0 || q.size(2) == 0 || k.size(2) == 0 || q.size(3) == 0) {
    p.dq.zero_();
    p.dk.zero_();
    p.done = true;
  }
  return p;
}

// Kernels::forward(in, out, accumulate): out (= or +=) the head-mean probabilities.
template <typename Kernels>
at::Tensor probs_mean_entry(const at::Tensor& q, const at::Tensor& k, double scale,
                            const std::optional<at::Tensor>& key_bias, double weight) {
  const ProbsMeanForward p = prepare_probs_mean(q, k, scale, key_bias, weight, Kernels::kTypes);
  if (!p.done) Kernels::forward(p.in, p.out, /*accumulate=*/false);
  return p.result();
}

template <typename Kernels>
void probs_mean_accumulate_entry(at::Tensor& out, const at::Tensor& q, const at::Tensor& k, double scale,
                                 const std::optional<at::Tensor>& key_bias, double weight) {
  const ProbsMeanAccumulate p = prepare_probs_mean_accumulate(out, q, k, scale, key_bias, weight, Kernels::kTypes);
  if (p.done) return;
  if (p.add_forward) {  // half / bfloat16 on float kernels: the forward, added once rounded
    out.add_(probs_mean_entry<Kernels>(q, k, scale, key_bias, weight));
    return;
  }
  Kernels::forward(p.in, out, /*accumulate=*/true);
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> probs_mean_backward_entry(const at::Tensor& grad, const at::Tensor& q,
                                                             const at::Tensor& k, double scale,
                                                             const std::optional<at::Tensor>& key_bias,
                                                             double weight) {
  const ProbsMeanBackward p = prepare_probs_mean_backward(grad, q, k, scale, key_bias, weight, Kernels::kTypes);
  if (!p.done) Kernels::backward(p);
  return p.result();
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_cross_attention_probs_mean(torch::Library& m) {
  m.impl("cross_attention_probs_mean", &probs_mean_entry<Kernels>);
  m.impl("cross_attention_probs_mean_accumulate", &probs_mean_accumulate_entry<Kernels>);
  m.impl("cross_attention_probs_mean_backward", &probs_mean_backward_entry<Kernels>);
}

}  // namespace dapo_fast
