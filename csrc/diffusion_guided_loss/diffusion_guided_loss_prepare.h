// The one entry of the diffusion-guided loss ops, registered for CPU and CUDA alike
// (diffusion_guided_loss_*entry<Kernels>): checks, the maps in the compute type of the device's
// kernels (Kernels::kTypes), the gradient output and the answers that need no kernel
// (common/entity_map_loss_prepare.h), then the device's kernel (Kernels::forward / backward, in
// diffusion_guided_loss_cpu.cpp and diffusion_guided_loss_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/entity_map_loss_prepare.h"

namespace dapo_fast {

inline MapLoss prepare_diffusion_guided_loss(const at::Tensor& heatmaps, const at::Tensor& targets,
                                             const at::Tensor& entity_valid, KernelTypes kernels) {
  return prepare_map_loss(heatmaps, targets, "targets", entity_valid, kernels);
}

struct DiffusionGuidedBackward {
  MapLoss in;
  at::Tensor grad_h;  // [B, E, H, W] in the compute type

  at::Tensor result() const { return grad_h.to(in.dtype); }
};

inline DiffusionGuidedBackward prepare_diffusion_guided_loss_backward(const at::Tensor& grad,
                                                                      const at::Tensor& heatmaps,
                                                                      const at::Tensor& targets,
                                                                      const at::Tensor& entity_valid,
                                                                      KernelTypes kernels) {
  DiffusionGuidedBackward p;
  p.in = prepare_map_loss_backward(grad, heatmaps, targets, "targets", entity_valid, kernels);
  p.grad_h = at::empty(p.in.h.sizes(), p.in.h.options());
  return p;
}

// Kernels::forward(p) returns the [B] loss (any floating type).
template <typename Kernels>
at::Tensor diffusion_guided_loss_entry(const at::Tensor& heatmaps, const at::Tensor& targets,
                                       const at::Tensor& entity_valid) {
  const MapLoss p = prepare_diffusion_guided_loss(heatmaps, targets, entity_valid, Kernels::kTypes);
  return p.done ? p.loss : Kernels::forward(p).to(p.dtype);
}

template <typename Kernels>
at::Tensor diffusion_guided_loss_backward_entry(const at::Tensor& grad, const at::Tensor& heatmaps,
                                                const at::Tensor& targets, const at::Tensor& entity_valid) {
  const DiffusionGuidedBackward p =
      prepare_diffusion_guided_loss_backward(grad, heatmaps, targets, entity_valid, Kernels::kTypes);
  if (!p.in.done) Kernels::backward(p);
  return p.result();
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_diffusion_guided_loss(torch::Library& m) {
  m.impl("diffusion_guided_loss", &diffusion_guided_loss_entry<Kernels>);
  m.impl("diffusion_guided_loss_backward", &diffusion_guided_loss_backward_entry<Kernels>);
}

}  // namespace dapo_fast
