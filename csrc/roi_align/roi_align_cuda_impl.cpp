// The RoIAlign ops on CUDA: the shared entry (roi_align_prepare.h) with the CUDA kernels'
// launches (device guard, stream, sizes), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "roi_align_cuda.h"
#include "roi_align_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static constexpr bool kBackwardWritesAll = false;  // atomics add into a zeroed grad_input

  static void forward(const RoiAlignForward& p) {
    const at::Tensor& input = p.input;
    c10::cuda::CUDAGuard guard(input.device());
    const RoiAlignSizes s{p.rois.size(0), input.size(0), input.size(1), input.size(2), input.size(3),
                          p.pooled_height, p.pooled_width, p.spatial_scale, p.sampling_ratio, p.aligned,
                          p.channels_last, p.out_channels_last};
    roi_align_forward_cuda_launch(cuda_dtype(input), input.data_ptr(), p.rois.data_ptr(), p.out_buffer.data_ptr(),
                                  s, current_cuda_stream());
  }

  static void backward(const RoiAlignBackward& p) {
    c10::cuda::CUDAGuard guard(p.grad.device());
    const RoiAlignSizes s{p.rois.size(0), p.batch_size, p.channels, p.height, p.width, p.pooled_height,
                          p.pooled_width, p.spatial_scale, p.sampling_ratio, p.aligned, p.channels_last,
                          p.channels_last};  // grad_input takes grad's layout
    roi_align_backward_cuda_launch(cuda_dtype(p.grad), p.grad.data_ptr(), p.rois.data_ptr(), p.grad_input.data_ptr(),
                                   s, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_roi_align<CudaKernels>(m); }

}  // namespace dapo_fast
