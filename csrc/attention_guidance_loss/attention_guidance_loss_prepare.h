// The one entry of the attention guidance loss ops, registered for CPU and CUDA alike
// (attention_guidance_loss_*entry<Kernels>): checks, the maps in the compute type of the device's
// kernels (Kernels::kTypes), the gradient outputs and the answers that need no kernel
// (common/entity_map_loss_prepare.h), then the device's kernel (Kernels::forward / backward, in
// attention_guidance_loss_cpu.cpp and attention_guidance_loss_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../common/entity_map_loss_prepare.h"

namespace dapo_fast {

inline MapLoss prepare_attention_guidance_loss(const at::Tensor& heatmaps, const at::Tensor& attn,
                                               const at::Tensor& entity_valid, KernelTypes kernels) {
  return prepare_map_loss(heatmaps, attn, "attn", entity_valid, kernels);
}

struct AttentionGuidanceBackward {
  MapLoss in;
  bool heatmaps_grad = false;
  at::Tensor grad_h;  // [B, E, H, W] in the compute type with heatmaps_grad, else [0]
  at::Tensor grad_a;  // [B, E, H, W] in the compute type

  std::tuple<at::Tensor, at::Tensor> result() const { return {grad_h.to(in.dtype), grad_a.to(in.dtype)}; }
};

inline AttentionGuidanceBackward prepare_attention_guidance_loss_backward(const at::Tensor& grad,
                                                                          const at::Tensor& heatmaps,
                                                                          const at::Tensor& attn,
                                                                          const at::Tensor& entity_valid,
                                                                          bool heatmaps_grad, KernelTypes kernels) {
  AttentionGuidanceBackward p;
  p.in = prepare_map_loss_backward(grad, heatmaps, attn, "attn", entity_valid, kernels);
  const at::Tensor& h = p.in.h;
  p.heatmaps_grad = heatmaps_grad;
  p.grad_a = at::empty(h.sizes(), h.options());
  p.grad_h = heatmaps_grad ? at::empty(h.sizes(), h.options()) : at::empty({0}, h.options());
  return p;
}

// Kernels::forward(p) returns the [B] loss (any floating type).
template <typename Kernels>
at::Tensor attention_guidance_loss_entry(const at::Tensor& heatmaps, const at::Tensor& attn,
                                         const at::Tensor& entity_valid) {
  const MapLoss p = prepare_attention_guidance_loss(heatmaps, attn, entity_valid, Kernels::kTypes);
  return p.done ? p.loss : Kernels::forward(p).to(p.dtype);
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> attention_guidance_loss_backward_entry(const at::Tensor& grad,
                                                                          const at::Tensor& heatmaps,
                                                                          const at::Tensor& attn,
                                                                          const at::Tensor& entity_valid,
                                                                          bool heatmaps_grad) {
  const AttentionGuidanceBackward p =
      prepare_attention_guidance_loss_backward(grad, heatmaps, attn, entity_valid, heatmaps_grad, Kernels::kTypes);
  if (!p.in.done) Kernels::backward(p);
  return p.result();
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_attention_guidance_loss(torch::Library& m) {
  m.impl("attention_guidance_loss", &attention_guidance_loss_entry<Kernels>);
  m.impl("attention_guidance_loss_backward", &attention_guidance_loss_backward_entry<Kernels>);
}

}  // namespace dapo_fast
