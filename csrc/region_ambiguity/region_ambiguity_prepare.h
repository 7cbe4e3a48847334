// The one entry of region_ambiguity, registered for CPU and CUDA alike
// (region_ambiguity_entry<Kernels>): checks, the variant, contiguity, the outputs, then the
// device's kernel (Kernels::run, in region_ambiguity_cpu.cpp and region_ambiguity_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "../common/proposal_masks_prepare.h"
#include "../soft_iou/soft_iou_prepare.h"

namespace dapo_fast {

struct RegionAmbiguity {
  at::Tensor response, masks, valid;  // contiguous
  at::Tensor ambiguity;               // [B, S]
  at::Tensor foreground;              // [B, S] int64
  at::Tensor field;                   // [B, S, H, W] with_grad, else [0]
  MaskSizes n;
  int variant = soft_iou_math::kIoU;
  double eps = 0;
  bool with_grad = false;
  bool done = false;  // no map
};

inline RegionAmbiguity prepare_region_ambiguity(const at::Tensor& response, const at::Tensor& masks,
                                                const at::Tensor& mask_valid, c10::string_view variant,
                                                double eps, bool with_grad) {
  check_response_masks(response, masks);
  check_mask_valid(response, masks, mask_valid);
  RegionAmbiguity p;
  p.variant = parse_variant(variant);
  p.eps = eps;
  p.with_grad = with_grad;
  p.response = response.contiguous();
  p.masks = masks.contiguous();
  p.valid = mask_valid.contiguous();
  p.n = mask_sizes(response, masks);
  p.ambiguity = at::empty({p.n.b, p.n.s}, response.options());
  p.foreground = at::empty({p.n.b, p.n.s}, response.options().dtype(at::kLong));
  p.field = with_grad ? at::empty(response.sizes(), response.options()) : at::empty({0}, response.options());
  p.done = p.n.b * p.n.s == 0;
  return p;
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor, at::Tensor> region_ambiguity_entry(const at::Tensor& response,
                                                                      const at::Tensor& masks,
                                                                      const at::Tensor& mask_valid,
                                                                      c10::string_view variant, double eps,
                                                                      bool with_grad) {
  const RegionAmbiguity p = prepare_region_ambiguity(response, masks, mask_valid, variant, eps, with_grad);
  if (!p.done) Kernels::run(p);
  return {p.ambiguity, p.foreground, p.field};
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_region_ambiguity(torch::Library& m) {
  m.impl("region_ambiguity", &region_ambiguity_entry<Kernels>);
}

}  // namespace dapo_fast
