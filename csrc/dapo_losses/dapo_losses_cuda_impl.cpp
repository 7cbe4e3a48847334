// Tensor glue of the DAPO loss CUDA kernels: checks, allocation, stream, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "dapo_losses_checks.h"
#include "dapo_losses_cuda.h"

namespace dapo_fast {
namespace {

MapLossSizes sizes_of(const at::Tensor& h) { return {h.size(0), h.size(1), h.size(2) * h.size(3)}; }

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

template <typename Launch>
at::Tensor loss_forward(const at::Tensor& heatmaps, const at::Tensor& maps, const char* maps_name,
                        const at::Tensor& entity_valid, int values, Launch launch) {
  check_map_loss_args(heatmaps, maps, maps_name, entity_valid);
  c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor h = heatmaps.contiguous(), a = maps.contiguous(), valid = entity_valid.contiguous();
  const MapLossSizes s = sizes_of(h);
  if (s.batch == 0) return at::empty({0}, h.options());
  if (s.entities == 0 || s.pixels == 0) return at::zeros({s.batch}, h.options());
  at::Tensor partials = at::empty({s.batch * map_loss_chunks(s) * values}, h.options().dtype(at::kDouble));
  at::Tensor loss = at::empty({s.batch}, h.options());
  launch(cuda_dtype(h), h.data_ptr(), a.data_ptr(), valid.data_ptr<bool>(), partials.data_ptr<double>(),
         loss.data_ptr(), s, stream());
  return loss;
}

at::Tensor attention_guidance_loss_cuda(const at::Tensor& heatmaps, const at::Tensor& attn,
                                        const at::Tensor& entity_valid) {
  return loss_forward(heatmaps, attn, "attn", entity_valid, 3, attention_guidance_loss_cuda_launch);
}

at::Tensor diffusion_guided_loss_cuda(const at::Tensor& heatmaps, const at::Tensor& targets,
                                      const at::Tensor& entity_valid) {
  return loss_forward(heatmaps, targets, "targets", entity_valid, 1, diffusion_guided_loss_cuda_launch);
}

std::tuple<at::Tensor, at::Tensor> attention_guidance_loss_backward_cuda(const at::Tensor& grad_in,
                                                                         const at::Tensor& heatmaps,
                                                                         const at::Tensor& attn,
                                                                         const at::Tensor& entity_valid,
                                                                         bool heatmaps_grad) {
  check_map_loss_args(heatmaps, attn, "attn", entity_valid);
  check_loss_grad(grad_in, heatmaps);
  c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor h = heatmaps.contiguous(), a = attn.contiguous(), valid = entity_valid.contiguous();
  const at::Tensor grad = grad_in.to(at::kDouble).contiguous();
  at::Tensor grad_a = at::empty(h.sizes(), h.options());
  at::Tensor grad_h = heatmaps_grad ? at::empty(h.sizes(), h.options()) : at::empty({0}, h.options());
  const MapLossSizes s = sizes_of(h);
  if (grad_a.numel() != 0)
    attention_guidance_loss_backward_cuda_launch(cuda_dtype(h), grad.data_ptr<double>(), h.data_ptr(), a.data_ptr(),
                                                 valid.data_ptr<bool>(), heatmaps_grad ? grad_h.data_ptr() : nullptr,
                                                 grad_a.data_ptr(), s, stream());
  return {grad_h, grad_a};
}

at::Tensor diffusion_guided_loss_backward_cuda(const at::Tensor& grad_in, const at::Tensor& heatmaps,
                                               const at::Tensor& targets, const at::Tensor& entity_valid) {
  check_map_loss_args(heatmaps, targets, "targets", entity_valid);
  check_loss_grad(grad_in, heatmaps);
  c10::cuda::CUDAGuard guard(heatmaps.device());
  const at::Tensor h = heatmaps.contiguous(), a = targets.contiguous(), valid = entity_valid.contiguous();
  const at::Tensor grad = grad_in.to(at::kDouble).contiguous();
  at::Tensor grad_h = at::empty(h.sizes(), h.options());
  if (grad_h.numel() != 0)
    diffusion_guided_loss_backward_cuda_launch(cuda_dtype(h), grad.data_ptr<double>(), h.data_ptr(), a.data_ptr(),
                                               valid.data_ptr<bool>(), grad_h.data_ptr(), sizes_of(h), stream());
  return grad_h;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) {
  m.impl("attention_guidance_loss", &attention_guidance_loss_cuda);
  m.impl("attention_guidance_loss_backward", &attention_guidance_loss_backward_cuda);
  m.impl("diffusion_guided_loss", &diffusion_guided_loss_cuda);
  m.impl("diffusion_guided_loss_backward", &diffusion_guided_loss_backward_cuda);
}

}  // namespace dapo_fast
