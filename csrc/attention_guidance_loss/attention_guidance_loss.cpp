// Schemas of DAPO's attention guidance loss (eq. 3) over per-entity maps (heatmaps h, attention
// maps a: [B, E, H, W], entity_valid: bool [B, E]). One-pass forward and backward kernels;
// kernels register per device in attention_guidance_loss_cpu.cpp and
// attention_guidance_loss_cuda_impl.cpp, autograd and fake impls live in Python.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // eq. 3 per sample, [B]: 1/(K(K-1)) sum_{i != j valid} (||h_i - a_i||^2 - ||a_i - a_j||^2)
  m.def("attention_guidance_loss(Tensor heatmaps, Tensor attn, Tensor entity_valid) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  // (grad_heatmaps or an empty [0] tensor when not wanted, grad_attn)
  m.def(
      "attention_guidance_loss_backward(Tensor grad, Tensor heatmaps, Tensor attn, Tensor entity_valid, "
      "bool heatmaps_grad) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}
