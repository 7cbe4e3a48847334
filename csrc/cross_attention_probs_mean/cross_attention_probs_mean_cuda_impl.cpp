// Tensor glue of the cross_attention_probs_mean CUDA kernels: checks, allocation, stream,
// registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "../common/cuda_glue.h"
#include "cross_attention_probs_mean_checks.h"
#include "cross_attention_probs_mean_cuda.h"

namespace dapo_fast {
namespace {

at::Tensor unit_stride(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

ProbsMeanSizes sizes_of(const at::Tensor& q, const at::Tensor& k, double scale, double weight) {
  return ProbsMeanSizes{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3),
                        {q.stride(0), q.stride(1), q.stride(2)}, {k.stride(0), k.stride(1), k.stride(2)},
                        scale, weight};
}

const void* bias_ptr(const std::optional<at::Tensor>& key_bias, const at::Tensor& q, at::Tensor& holder) {
  if (!key_bias.has_value() || !key_bias->defined()) return nullptr;
  holder = key_bias->to(q.scalar_type()).contiguous();
  return holder.data_ptr();
}

void run_forward(at::Tensor& out, const at::Tensor& q_in, const at::Tensor& k_in, double scale,
                 const std::optional<at::Tensor>& key_bias, double weight, bool accumulate) {
  if (out.numel() == 0) return;
  if (q_in.size(1) == 0) {
    out.fill_(std::numeric_limits<double>::quiet_NaN());
    return;
  }
  const at::Tensor q = unit_stride(q_in), k = unit_stride(k_in);
  at::Tensor bias_holder;
  const void* bias = bias_ptr(key_bias, q, bias_holder);
  const int64_t os[3] = {out.stride(0), out.stride(1), out.stride(2)};
  probs_mean_forward_cuda_launch(cuda_dtype(q), q.data_ptr(), k.data_ptr(), bias, out.data_ptr(), os, accumulate,
                                 sizes_of(q, k, scale, weight), c10::cuda::getCurrentCUDAStream().stream());
}

at::Tensor probs_mean_cuda(const at::Tensor& q, const at::Tensor& k, double scale,
                           const std::optional<at::Tensor>& key_bias, double weight) {
  check_probs_mean_args(q, k, key_bias);
  c10::cuda::CUDAGuard guard(q.device());
  at::Tensor out = at::empty({q.size(0), q.size(2), k.size(2)}, q.options());
  run_forward(out, q, k, scale, key_bias, weight, false);
  return out;
}

void probs_mean_accumulate_cuda(at::Tensor& out, const at::Tensor& q, const at::Tensor& k, double scale,
                                const std::optional<at::Tensor>& key_bias, double weight) {
  check_probs_mean_args(q, k, key_bias);
  check_probs_mean_out(out, q, k, "out");
  c10::cuda::CUDAGuard guard(q.device());
  run_forward(out, q, k, scale, key_bias, weight, true);
}

std::tuple<at::Tensor, at::Tensor> probs_mean_backward_cuda(const at::Tensor& grad_in, const at::Tensor& q_in,
                                                             const at::Tensor& k_in, double scale,
                                                             const std::optional<at::Tensor>& key_bias,
                                                             double weight) {
  check_probs_mean_args(q_in, k_in, key_bias);
  check_dim(grad_in, 3, "grad");
  TORCH_CHECK(grad_in.size(0) == q_in.size(0) && grad_in.size(1) == q_in.size(2) && grad_in.size(2) == k_in.size(2),
              "grad must have shape [B, HW, T], got ", grad_in.sizes());
  c10::cuda::CUDAGuard guard(q_in.device());
  const at::Tensor q = unit_stride(q_in), k = unit_stride(k_in);
  const at::Tensor grad = grad_in.to(q.scalar_type()).contiguous();
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(k.sizes(), k.options());
  if (dq.numel() == 0 && dk.numel() == 0) return {dq, dk};
  if (q.size(2) == 0 || k.size(2) == 0 || q.size(3) == 0) return {dq.zero_(), dk.zero_()};
  at::Tensor bias_holder;
  const void* bias = bias_ptr(key_bias, q, bias_holder);
  const auto acc_type = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  at::Tensor ds = at::empty({q.size(0), q.size(1), q.size(2), k.size(2)}, q.options().dtype(acc_type));
  probs_mean_backward_cuda_launch(cuda_dtype(q), grad.data_ptr(), q.data_ptr(), k.data_ptr(), bias, ds.data_ptr(),
                                  dq.data_ptr(), dk.data_ptr(), sizes_of(q, k, scale, weight),
                                  c10::cuda::getCurrentCUDAStream().stream());
  return {dq, dk};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) {
  m.impl("cross_attention_probs_mean", &probs_mean_cuda);
  m.impl("cross_attention_probs_mean_accumulate", &probs_mean_accumulate_cuda);
  m.impl("cross_attention_probs_mean_backward", &probs_mean_backward_cuda);
}

}  // namespace dapo_fast
