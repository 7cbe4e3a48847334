// Tensor glue of the PCNet CUDA kernels: checks, allocation, stream, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>

#include "../common/cuda_glue.h"
#include "pcnet_checks.h"
#include "pcnet_cuda.h"

namespace dapo_fast {
namespace {

bool is_u8(const at::Tensor& masks) {
  return masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte;
}

PcnetSizes sizes_of(const at::Tensor& response, const at::Tensor& masks) {
  return PcnetSizes{response.size(0), response.size(1), masks.size(1), response.size(2) * response.size(3)};
}

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

std::tuple<at::Tensor, at::Tensor> proposal_alignment_cuda(const at::Tensor& response_in, const at::Tensor& masks_in,
                                                           const at::Tensor& valid_in) {
  check_pcnet_args(response_in, masks_in);
  check_mask_valid(response_in, masks_in, valid_in);
  c10::cuda::CUDAGuard guard(response_in.device());
  const at::Tensor response = response_in.contiguous(), masks = masks_in.contiguous(), valid = valid_in.contiguous();
  const PcnetSizes n = sizes_of(response, masks);
  at::Tensor scores = at::empty({n.b, n.s, n.p}, response.options());
  at::Tensor argmax = at::empty({n.b, n.s, n.p}, response.options().dtype(at::kLong));
  if (n.hw == 0) return {scores.zero_(), argmax.fill_(-1)};
  proposal_alignment_cuda_launch(cuda_dtype(response), is_u8(masks), response.data_ptr(), masks.data_ptr(),
                                 valid.data_ptr<bool>(), scores.data_ptr(), argmax.data_ptr<int64_t>(), n, stream());
  return {scores, argmax};
}

at::Tensor proposal_alignment_backward_cuda(const at::Tensor& grad_in, const at::Tensor& argmax_in,
                                            const at::Tensor& masks_in, int64_t height, int64_t width) {
  check_dim(grad_in, 3, "grad");
  check_floating(grad_in, "grad");
  TORCH_CHECK(argmax_in.sizes() == grad_in.sizes() && argmax_in.scalar_type() == at::kLong,
              "argmax must be int64 with grad's shape ", grad_in.sizes(), ", got ", argmax_in.sizes());
  check_dim(masks_in, 4, "masks");
  TORCH_CHECK(masks_in.size(0) == grad_in.size(0) && masks_in.size(1) == grad_in.size(2) &&
                  masks_in.size(2) == height && masks_in.size(3) == width,
              "masks must have shape [B, P, height, width] matching grad ", grad_in.sizes(), ", got ", masks_in.sizes());
  c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), argmax = argmax_in.contiguous(), masks = masks_in.contiguous();
  const PcnetSizes n{grad.size(0), grad.size(1), grad.size(2), height * width};
  at::Tensor out = at::zeros({n.b, n.s, height, width}, grad.options());
  proposal_alignment_backward_cuda_launch(cuda_dtype(grad), is_u8(masks), grad.data_ptr(), argmax.data_ptr<int64_t>(),
                                          masks.data_ptr(), out.data_ptr(), n, stream());
  return out;
}

at::Tensor soft_iou_cuda(const at::Tensor& response_in, const at::Tensor& masks_in, c10::string_view variant,
                         double eps) {
  check_pcnet_args(response_in, masks_in);
  const int v = parse_variant(std::string(variant));
  c10::cuda::CUDAGuard guard(response_in.device());
  const at::Tensor response = response_in.contiguous(), masks = masks_in.contiguous();
  const PcnetSizes n = sizes_of(response, masks);
  at::Tensor out = at::empty({n.b, n.s, n.p}, response.options());
  soft_iou_cuda_launch(cuda_dtype(response), is_u8(masks), response.data_ptr(), masks.data_ptr(), out.data_ptr(), n,
                       v, eps, stream());
  return out;
}

at::Tensor soft_iou_backward_cuda(const at::Tensor& grad_in, const at::Tensor& response_in, const at::Tensor& masks_in,
                                  c10::string_view variant, double eps) {
  check_pcnet_args(response_in, masks_in);
  const int v = parse_variant(std::string(variant));
  const PcnetSizes n = sizes_of(response_in, masks_in);
  TORCH_CHECK(grad_in.dim() == 3 && grad_in.size(0) == n.b && grad_in.size(1) == n.s && grad_in.size(2) == n.p,
              "grad must have shape [B, S, P], got ", grad_in.sizes());
  check_same_dtype(grad_in, "grad", response_in, "response");
  c10::cuda::CUDAGuard guard(response_in.device());
  const at::Tensor grad = grad_in.contiguous(), response = response_in.contiguous(), masks = masks_in.contiguous();
  at::Tensor coeffs = at::empty({2 * n.b * n.s * n.p}, response.options().dtype(at::kDouble));
  at::Tensor out = at::empty(response.sizes(), response.options());
  soft_iou_backward_cuda_launch(cuda_dtype(response), is_u8(masks), grad.data_ptr(), response.data_ptr(),
                                masks.data_ptr(), coeffs.data_ptr<double>(), out.data_ptr(), n, v, eps, stream());
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> region_ambiguity_cuda(const at::Tensor& response_in,
                                                                     const at::Tensor& masks_in,
                                                                     const at::Tensor& valid_in,
                                                                     c10::string_view variant, double eps,
                                                                     bool with_grad) {
  check_pcnet_args(response_in, masks_in);
  check_mask_valid(response_in, masks_in, valid_in);
  const int v = parse_variant(std::string(variant));
  c10::cuda::CUDAGuard guard(response_in.device());
  const at::Tensor response = response_in.contiguous(), masks = masks_in.contiguous(), valid = valid_in.contiguous();
  const PcnetSizes n = sizes_of(response, masks);
  at::Tensor ambiguity = at::empty({n.b, n.s}, response.options());
  at::Tensor foreground = at::empty({n.b, n.s}, response.options().dtype(at::kLong));
  at::Tensor field = with_grad ? at::empty(response.sizes(), response.options()) : at::empty({0}, response.options());
  region_ambiguity_cuda_launch(cuda_dtype(response), is_u8(masks), response.data_ptr(), masks.data_ptr(),
                               valid.data_ptr<bool>(), ambiguity.data_ptr(), foreground.data_ptr<int64_t>(),
                               with_grad ? field.data_ptr() : nullptr, n, v, eps, stream());
  return {ambiguity, foreground, field};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) {
  m.impl("proposal_alignment", &proposal_alignment_cuda);
  m.impl("proposal_alignment_backward", &proposal_alignment_backward_cuda);
  m.impl("soft_iou", &soft_iou_cuda);
  m.impl("soft_iou_backward", &soft_iou_backward_cuda);
  m.impl("region_ambiguity", &region_ambiguity_cuda);
}

}  // namespace dapo_fast
