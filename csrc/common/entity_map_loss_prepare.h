// Checks and preparation shared by the losses over per-entity maps (attention_guidance_loss,
// diffusion_guided_loss); each op's <op>_prepare.h is this entry under its own names.
#pragma once
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "checks.h"
#include "entity_map_loss.h"

namespace dapo_fast {

inline void check_map_loss_args(const at::Tensor& h, const at::Tensor& a, const char* a_name,
                                const at::Tensor& valid) {
  check_dim(h, 4, "heatmaps");
  check_floating(h, "heatmaps");
  check_same_dtype(h, "heatmaps", a, a_name);
  check_same_device(h, "heatmaps", a, a_name);
  TORCH_CHECK(h.sizes() == a.sizes(), "heatmaps and ", a_name, " must have the same shape [B, E, H, W], got ",
              h.sizes(), " and ", a.sizes());
  TORCH_CHECK(valid.scalar_type() == at::kBool, "entity_valid must be a bool tensor, got ", valid.scalar_type());
  check_same_device(h, "heatmaps", valid, "entity_valid");
  TORCH_CHECK(valid.dim() == 2 && valid.size(0) == h.size(0) && valid.size(1) == h.size(1),
              "entity_valid must have shape [B, E] = [", h.size(0), ", ", h.size(1), "], got ", valid.sizes());
}

inline void check_loss_grad(const at::Tensor& grad, const at::Tensor& h) {
  TORCH_CHECK(grad.dim() == 1 && grad.size(0) == h.size(0), "grad must have shape [B] = [", h.size(0), "], got ",
              grad.sizes());
  check_same_device(h, "heatmaps", grad, "grad");
}

struct MapLoss {
  at::Tensor h, a;      // contiguous [B, E, H, W] in the compute type (compute_type)
  at::Tensor valid;     // contiguous bool [B, E]
  at::Tensor grad;      // backward: contiguous double [B]
  MapLossSizes s;
  at::ScalarType dtype;  // the inputs' dtype: what the op returns
  at::Tensor loss;       // forward, when done: the answer
  bool done = false;     // forward: no sample, entity or pixel (every loss is 0); backward: empty gradient
};

// The inputs in the compute type, contiguous (after the checks).
inline MapLoss map_loss_inputs(const at::Tensor& heatmaps, const at::Tensor& maps, const at::Tensor& entity_valid,
                               KernelTypes kernels) {
  MapLoss p;
  p.dtype = heatmaps.scalar_type();
  const at::ScalarType type = compute_type(p.dtype, kernels);
  p.h = heatmaps.to(type).contiguous();
  p.a = maps.to(type).contiguous();
  p.valid = entity_valid.contiguous();
  p.s = MapLossSizes{heatmaps.size(0), heatmaps.size(1), heatmaps.size(2) * heatmaps.size(3)};
  return p;
}

inline MapLoss prepare_map_loss(const at::Tensor& heatmaps, const at::Tensor& maps, const char* maps_name,
                                const at::Tensor& entity_valid, KernelTypes kernels) {
  check_map_loss_args(heatmaps, maps, maps_name, entity_valid);
  MapLoss p = map_loss_inputs(heatmaps, maps, entity_valid, kernels);
  if (p.s.batch == 0 || p.s.entities == 0 || p.s.pixels == 0) {
    p.loss = at::zeros({p.s.batch}, heatmaps.options());
    p.done = true;
  }
  return p;
}

// The gradient outputs are the op's own (<op>_prepare.h allocates them in p.h's type).
inline MapLoss prepare_map_loss_backward(const at::Tensor& grad, const at::Tensor& heatmaps, const at::Tensor& maps,
                                         const char* maps_name, const at::Tensor& entity_valid,
                                         KernelTypes kernels) {
  check_map_loss_args(heatmaps, maps, maps_name, entity_valid);
  check_loss_grad(grad, heatmaps);
  MapLoss p = map_loss_inputs(heatmaps, maps, entity_valid, kernels);
  p.grad = grad.to(at::kDouble).contiguous();
  p.done = p.h.numel() == 0;
  return p;
}

}  // namespace dapo_fast
