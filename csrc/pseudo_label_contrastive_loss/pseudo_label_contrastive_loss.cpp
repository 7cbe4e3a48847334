// Schemas of the fused pseudo-label contrastive loss (MPL). Kernels register per device in
// pseudo_label_contrastive_loss_cpu.cpp and
// pseudo_label_contrastive_loss_cuda_impl.cpp; autograd and fake impls are in
// dapo_fast/ops/pseudo_label_contrastive_loss.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // Returns (loss, grad_phrase, grad_region). loss is [] for reduction mean/sum and [B, Q] for
  // none. When reduction != "none" and want_grad_phrase / want_grad_region, the forward also
  // returns the gradient of the loss for an upstream gradient of 1 (computed from the same
  // logits tile, so no second pass); otherwise those outputs are empty [0] tensors.
  m.def(
      "pseudo_label_contrastive_loss(Tensor phrase, Tensor region, Tensor teacher_phrase, Tensor teacher_region, "
      "Tensor phrase_valid, Tensor region_valid, Tensor? fn_mask, float tau, float teacher_tau, str mode, "
      "str reduction, bool want_grad_phrase, bool want_grad_region) -> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
  // Gradients (phrase, region) for the upstream gradient grad_loss (shape of the loss).
  m.def(
      "pseudo_label_contrastive_loss_backward(Tensor grad_loss, Tensor phrase, Tensor region, "
      "Tensor teacher_phrase, Tensor teacher_region, Tensor phrase_valid, Tensor region_valid, Tensor? fn_mask, "
      "float tau, float teacher_tau, str mode, str reduction) -> (Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}
