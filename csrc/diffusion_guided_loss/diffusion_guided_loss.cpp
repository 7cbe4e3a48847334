// Schemas of DAPO's diffusion-guided loss (eq. 5) over per-entity maps (heatmaps h, targets a:
// [B, E, H, W], entity_valid: bool [B, E]). Kernels register per device in
// diffusion_guided_loss_cpu.cpp and diffusion_guided_loss_cuda_impl.cpp; autograd and fake
// impls live in Python.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dapo_fast, m) {
  // eq. 5 per sample before the batch reduction, [B]: sum_{k valid} ||h_k - a_k||^2
  m.def("diffusion_guided_loss(Tensor heatmaps, Tensor targets, Tensor entity_valid) -> Tensor",
        {at::Tag::pt2_compliant_tag});
  m.def("diffusion_guided_loss_backward(Tensor grad, Tensor heatmaps, Tensor targets, Tensor entity_valid) -> Tensor",
        {at::Tag::pt2_compliant_tag});
}
