// The cross_attention_probs_mean ops on CUDA: the shared entries
// (cross_attention_probs_mean_prepare.h) with the CUDA kernels' launches (device guard, scratch,
// stream), registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <optional>

#include "../common/cuda_glue.h"
#include "cross_attention_probs_mean_cuda.h"
#include "cross_attention_probs_mean_prepare.h"

namespace dapo_fast {
namespace {

ProbsMeanSizes sizes_of(const ProbsMeanInputs& in) {
  const at::Tensor &q = in.q, &k = in.k;
  return ProbsMeanSizes{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3),
                        {q.stride(0), q.stride(1), q.stride(2)}, {k.stride(0), k.stride(1), k.stride(2)},
                        in.scale, in.weight};
}

struct CudaKernels {
  static constexpr KernelTypes kTypes = KernelTypes::AllFloating;

  // out (= or +=) the head-mean probabilities.
  static void forward(const ProbsMeanInputs& in, const at::Tensor& out, bool accumulate) {
    c10::cuda::CUDAGuard guard(in.q.device());
    const int64_t os[3] = {out.stride(0), out.stride(1), out.stride(2)};
    probs_mean_forward_cuda_launch(cuda_dtype(in.q), in.q.data_ptr(), in.k.data_ptr(),
                                   in.bias.defined() ? in.bias.data_ptr() : nullptr, out.data_ptr(), os, accumulate,
                                   sizes_of(in), current_cuda_stream());
  }

  static void backward(const ProbsMeanBackward& p) {
    const at::Tensor &q = p.in.q, &k = p.in.k;
    c10::cuda::CUDAGuard guard(q.device());
    const auto acc_type = q.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    at::Tensor ds = at::empty({q.size(0), q.size(1), q.size(2), k.size(2)}, q.options().dtype(acc_type));
    probs_mean_backward_cuda_launch(cuda_dtype(q), p.grad.data_ptr(), q.data_ptr(), k.data_ptr(),
                                    p.in.bias.defined() ? p.in.bias.data_ptr() : nullptr, ds.data_ptr(),
                                    p.dq.data_ptr(), p.dk.data_ptr(), sizes_of(p.in), current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_cross_attention_probs_mean<CudaKernels>(m); }

}  // namespace dapo_fast
