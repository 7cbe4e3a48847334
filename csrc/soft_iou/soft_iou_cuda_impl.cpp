// The soft_iou ops on CUDA: the shared entries (soft_iou_prepare.h) with the CUDA kernels'
// launches (device guard, scratch, stream), registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "soft_iou_cuda.h"
#include "soft_iou_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void forward(const SoftIou& p) {
    c10::cuda::CUDAGuard guard(p.response.device());
    soft_iou_cuda_launch(cuda_dtype(p.response), masks_are_bytes(p.masks), p.response.data_ptr(), p.masks.data_ptr(),
                         p.out.data_ptr(), p.n, p.variant, p.eps, current_cuda_stream());
  }

  static void backward(const SoftIou& p) {
    c10::cuda::CUDAGuard guard(p.response.device());
    at::Tensor coeffs = at::empty({2 * p.n.b * p.n.s * p.n.p}, p.response.options().dtype(at::kDouble));
    soft_iou_backward_cuda_launch(cuda_dtype(p.response), masks_are_bytes(p.masks), p.grad.data_ptr(),
                                  p.response.data_ptr(), p.masks.data_ptr(), coeffs.data_ptr<double>(),
                                  p.out.data_ptr(), p.n, p.variant, p.eps, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_soft_iou<CudaKernels>(m); }

}  // namespace dapo_fast
