// The attention guidance loss ops on CUDA: the shared entries (attention_guidance_loss_prepare.h)
// with the CUDA kernels' launches (device guard, scratch, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "../common/entity_map_loss_cuda.h"
#include "attention_guidance_loss_cuda.h"
#include "attention_guidance_loss_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static constexpr KernelTypes kTypes = KernelTypes::AllFloating;

  // fit, norm and total per (sample, chunk)
  static at::Tensor forward(const MapLoss& p) {
    return map_loss_cuda_forward(p, 3, attention_guidance_loss_cuda_launch);
  }

  static void backward(const AttentionGuidanceBackward& p) {
    c10::cuda::CUDAGuard guard(p.in.h.device());
    attention_guidance_loss_backward_cuda_launch(
        cuda_dtype(p.in.h), p.in.grad.data_ptr<double>(), p.in.h.data_ptr(), p.in.a.data_ptr(),
        p.in.valid.data_ptr<bool>(), p.heatmaps_grad ? p.grad_h.data_ptr() : nullptr, p.grad_a.data_ptr(),
        p.in.s, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_attention_guidance_loss<CudaKernels>(m); }

}  // namespace dapo_fast
