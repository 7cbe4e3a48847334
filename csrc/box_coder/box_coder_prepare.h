// The one entry of box_encode / box_decode and their backward, registered for CPU and CUDA alike
// (box_*_entry<Kernels>): checks, the parsed weights, contiguity, the outputs, then the device's
// kernel (Kernels::encode / encode_backward / decode / decode_backward, in box_coder_cpu.cpp and
// box_coder_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../common/checks.h"
#include "box_coder_common.h"

namespace dapo_fast {

inline void check_rows4(const at::Tensor& t, const char* name) {
  check_floating(t, name);
  TORCH_CHECK(t.dim() == 2 && t.size(1) == 4, name, " must have shape [K, 4], got ", t.sizes());
}

inline void check_pair(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  check_rows4(a, a_name);
  check_rows4(b, b_name);
  TORCH_CHECK(a.size(0) == b.size(0), a_name, " and ", b_name, " must have the same number of rows, got ", a.size(0),
              " and ", b.size(0));
  check_same_dtype(a, a_name, b, b_name);
  check_same_device(a, a_name, b, b_name);
}

inline box_math::Weights parse_weights(c10::ArrayRef<double> w) {
  TORCH_CHECK(w.size() == 4, "weights must have 4 values (wx, wy, ww, wh), got ", w.size());
  return box_math::Weights{w[0], w[1], w[2], w[3]};
}

// Forward: rows of x (proposals / deltas) paired with rows of y (targets / boxes).
struct BoxPair {
  at::Tensor x, y;  // contiguous [K, 4]
  at::Tensor out;   // [K, 4]
  box_math::Weights weights;
  double scale_clamp = 0;  // box_decode: the largest log-scale delta
  bool done = false;  // no rows
};

inline BoxPair prepare_box_pair(const at::Tensor& x, const char* x_name, const at::Tensor& y, const char* y_name,
                                c10::ArrayRef<double> weights, double scale_clamp = 0) {
  check_pair(x, x_name, y, y_name);
  BoxPair p;
  p.weights = parse_weights(weights);
  p.scale_clamp = scale_clamp;
  p.x = x.contiguous();
  p.y = y.contiguous();
  p.out = at::empty(p.x.sizes(), p.x.options());
  p.done = p.out.numel() == 0;
  return p;
}

// Backward: the upstream grad [K, 4] and the gradients of x and y.
struct BoxPairBackward {
  at::Tensor grad, x, y;        // contiguous [K, 4]
  at::Tensor grad_x, grad_y;    // [K, 4]
  box_math::Weights weights;
  double scale_clamp = 0;  // box_decode: the largest log-scale delta
  bool done = false;
};

inline BoxPairBackward prepare_box_pair_backward(const at::Tensor& grad, const at::Tensor& x, const char* x_name,
                                                 const at::Tensor& y, const char* y_name,
                                                 c10::ArrayRef<double> weights, double scale_clamp = 0) {
  check_pair(x, x_name, y, y_name);
  check_pair(grad, "grad", x, x_name);
  BoxPairBackward p;
  p.weights = parse_weights(weights);
  p.scale_clamp = scale_clamp;
  p.grad = grad.contiguous();
  p.x = x.contiguous();
  p.y = y.contiguous();
  p.grad_x = at::empty(p.x.sizes(), p.x.options());
  p.grad_y = at::empty(p.x.sizes(), p.x.options());
  p.done = p.x.numel() == 0;
  return p;
}

template <typename Kernels>
at::Tensor box_encode_entry(const at::Tensor& proposals, const at::Tensor& targets, c10::ArrayRef<double> weights) {
  const BoxPair p = prepare_box_pair(proposals, "proposals", targets, "targets", weights);
  if (!p.done) Kernels::encode(p);
  return p.out;
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> box_encode_backward_entry(const at::Tensor& grad, const at::Tensor& proposals,
                                                             const at::Tensor& targets,
                                                             c10::ArrayRef<double> weights) {
  const BoxPairBackward p = prepare_box_pair_backward(grad, proposals, "proposals", targets, "targets", weights);
  if (!p.done) Kernels::encode_backward(p);
  return {p.grad_x, p.grad_y};
}

template <typename Kernels>
at::Tensor box_decode_entry(const at::Tensor& deltas, const at::Tensor& boxes, c10::ArrayRef<double> weights,
                            double scale_clamp) {
  const BoxPair p = prepare_box_pair(deltas, "deltas", boxes, "boxes", weights, scale_clamp);
  if (!p.done) Kernels::decode(p);
  return p.out;
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> box_decode_backward_entry(const at::Tensor& grad, const at::Tensor& deltas,
                                                             const at::Tensor& boxes, c10::ArrayRef<double> weights,
                                                             double scale_clamp) {
  const BoxPairBackward p = prepare_box_pair_backward(grad, deltas, "deltas", boxes, "boxes", weights, scale_clamp);
  if (!p.done) Kernels::decode_backward(p);
  return {p.grad_x, p.grad_y};
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_box_coder(torch::Library& m) {
  m.impl("box_encode", &box_encode_entry<Kernels>);
  m.impl("box_encode_backward", &box_encode_backward_entry<Kernels>);
  m.impl("box_decode", &box_decode_entry<Kernels>);
  m.impl("box_decode_backward", &box_decode_backward_entry<Kernels>);
}

}  // namespace dapo_fast
