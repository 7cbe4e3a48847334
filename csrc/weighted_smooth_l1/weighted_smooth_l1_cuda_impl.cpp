// The weighted smooth-L1 ops on CUDA: the shared entries (weighted_smooth_l1_prepare.h) with the
// CUDA kernels' launches (device guard, scratch, stream), registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "weighted_smooth_l1_cuda.h"
#include "weighted_smooth_l1_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void forward(const WeightedSmoothL1& p) {
    c10::cuda::CUDAGuard guard(p.input.device());
    const int64_t n = p.input.numel();
    at::Tensor partials = at::empty({weighted_smooth_l1_partials(n)}, p.input.options().dtype(at::kDouble));
    weighted_smooth_l1_cuda_launch(cuda_dtype(p.input), p.input.data_ptr(), p.target.data_ptr(), p.weight.data_ptr(),
                                   p.out.data_ptr(), partials.data_ptr<double>(), n, p.beta, p.reduction,
                                   current_cuda_stream());
  }

  static void backward(const WeightedSmoothL1& p) {
    c10::cuda::CUDAGuard guard(p.input.device());
    weighted_smooth_l1_backward_cuda_launch(cuda_dtype(p.input), p.grad.data_ptr(), p.input.data_ptr(),
                                            p.target.data_ptr(), p.weight.data_ptr(), p.out.data_ptr(),
                                            p.input.numel(), p.beta, p.reduction, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_weighted_smooth_l1<CudaKernels>(m); }

}  // namespace dapo_fast
