// The one entry of the soft_iou ops, registered for CPU and CUDA alike (soft_iou_*entry<Kernels>):
// checks, the variant, contiguity, the output, then the device's kernel (Kernels::forward /
// backward, in soft_iou_cpu.cpp and soft_iou_cuda_impl.cpp). parse_variant is also
// region_ambiguity's.
#pragma once
#include <ATen/ops/empty.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <string_view>

#include "../common/proposal_masks_prepare.h"
#include "soft_iou_common.h"

namespace dapo_fast {

inline int parse_variant(c10::string_view name) {
  const std::string_view variant(name.data(), name.size());
  TORCH_CHECK(variant == "iou" || variant == "half_dice", "variant must be 'iou' or 'half_dice', got '", variant,
              "'");
  return variant == "iou" ? soft_iou_math::kIoU : soft_iou_math::kHalfDice;
}

struct SoftIou {
  at::Tensor grad;             // backward only: contiguous [B, S, P]
  at::Tensor response, masks;  // contiguous
  at::Tensor out;              // forward: [B, S, P]; backward: response's shape
  MaskSizes n;
  int variant = soft_iou_math::kIoU;
  double eps = 0;
  bool done = false;  // empty output
};

inline SoftIou prepare_soft_iou(const at::Tensor& response, const at::Tensor& masks, c10::string_view variant,
                                double eps) {
  check_response_masks(response, masks);
  SoftIou p;
  p.variant = parse_variant(variant);
  p.eps = eps;
  p.response = response.contiguous();
  p.masks = masks.contiguous();
  p.n = mask_sizes(response, masks);
  p.out = at::empty({p.n.b, p.n.s, p.n.p}, response.options());
  p.done = p.out.numel() == 0;
  return p;
}

inline SoftIou prepare_soft_iou_backward(const at::Tensor& grad, const at::Tensor& response, const at::Tensor& masks,
                                         c10::string_view variant, double eps) {
  check_response_masks(response, masks);
  SoftIou p;
  p.variant = parse_variant(variant);
  p.eps = eps;
  p.n = mask_sizes(response, masks);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == p.n.b && grad.size(1) == p.n.s && grad.size(2) == p.n.p,
              "grad must have shape [B, S, P] = [", p.n.b, ", ", p.n.s, ", ", p.n.p, "], got ", grad.sizes());
  check_same_dtype(grad, "grad", response, "response");
  check_same_device(grad, "grad", response, "response");
  p.grad = grad.contiguous();
  p.response = response.contiguous();
  p.masks = masks.contiguous();
  p.out = at::empty(response.sizes(), response.options());
  p.done = p.out.numel() == 0;
  return p;
}

template <typename Kernels>
at::Tensor soft_iou_entry(const at::Tensor& response, const at::Tensor& masks, c10::string_view variant, double eps) {
  const SoftIou p = prepare_soft_iou(response, masks, variant, eps);
  if (!p.done) Kernels::forward(p);
  return p.out;
}

template <typename Kernels>
at::Tensor soft_iou_backward_entry(const at::Tensor& grad, const at::Tensor& response, const at::Tensor& masks,
                                   c10::string_view variant, double eps) {
  const SoftIou p = prepare_soft_iou_backward(grad, response, masks, variant, eps);
  if (!p.done) Kernels::backward(p);
  return p.out;
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_soft_iou(torch::Library& m) {
  m.impl("soft_iou", &soft_iou_entry<Kernels>);
  m.impl("soft_iou_backward", &soft_iou_backward_entry<Kernels>);
}

}  // namespace dapo_fast
