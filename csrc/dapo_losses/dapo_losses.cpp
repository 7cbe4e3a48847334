// Schemas of DAPO's two losses over per-entity maps (heatmaps h, attention maps a: [B, E, H, W],
// entity_valid: bool [B, E]). Each has a one-pass forward and a one-pass backward kernel;
// autograd and fake impls live in dapo_fast/ops/dapo_losses.py.
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
  // eq. 5 per sample before the batch reduction, [B]: sum_{k valid} ||h_k - a_k||^2
  m.def("diffusion_guided_loss(Tensor heatmaps, Tensor targets, Tensor entity_valid) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("diffusion_guided_loss_backward(Tensor grad, Tensor heatmaps, Tensor targets, Tensor entity_valid) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
