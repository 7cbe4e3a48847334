// Argument checks of the DAPO loss ops, shared by the CPU and CUDA entry points.
#pragma once
#include "../common/checks.h"

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

}  // namespace dapo_fast
