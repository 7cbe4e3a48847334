// Tensor glue of the RoIAlign CUDA kernels: checks, allocation, stream, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "roi_align_checks.h"
#include "roi_align_cuda.h"

namespace dapo_fast {
namespace {

at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois_in, double spatial_scale,
                                  int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  check_roi_align_args(input, "input", 4, rois_in, pooled_height, pooled_width);
  c10::cuda::CUDAGuard guard(input.device());
  const bool nhwc = is_channels_last(input);
  const at::Tensor feat = nhwc ? input : input.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const int64_t k = rois.size(0), c = input.size(1);
  at::Tensor out_buffer = nhwc ? at::empty({k, pooled_height, pooled_width, c}, input.options())
                               : at::empty({k, c, pooled_height, pooled_width}, input.options());
  at::Tensor out = nhwc ? out_buffer.permute({0, 3, 1, 2}) : out_buffer;
  if (out.numel() == 0) return out;
  if (input.size(2) == 0 || input.size(3) == 0) return out.zero_();
  const RoiAlignSizes s{k, input.size(0), c, input.size(2), input.size(3), pooled_height, pooled_width,
                        spatial_scale, static_cast<int>(sampling_ratio), aligned, nhwc};
  roi_align_forward_cuda_launch(cuda_dtype(input), feat.data_ptr(), rois.data_ptr(), out_buffer.data_ptr(), s,
                                c10::cuda::getCurrentCUDAStream().stream());
  return out;
}

at::Tensor roi_align_backward_cuda(const at::Tensor& grad_in, const at::Tensor& rois_in, double spatial_scale,
                                   int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                                   int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  check_roi_align_args(grad_in, "grad", 4, rois_in, pooled_height, pooled_width);
  TORCH_CHECK(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0,
              "input size (batch_size, channels, height, width) must be non-negative");
  c10::cuda::CUDAGuard guard(grad_in.device());
  const bool nhwc = is_channels_last(grad_in);
  const at::Tensor grad = nhwc ? grad_in : grad_in.contiguous();
  const at::Tensor rois = rois_in.contiguous();
  const auto format = nhwc ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const bool reduced = grad.scalar_type() == at::kHalf || grad.scalar_type() == at::kBFloat16;
  // (at::zeros ignores a memory format in its options, so allocate with the format and zero)
  at::Tensor acc = at::empty({batch_size, channels, height, width},
                             grad.options().dtype(reduced ? at::kFloat : grad.scalar_type()), format)
                       .zero_();
  if (acc.numel() != 0 && rois.size(0) != 0) {
    const RoiAlignSizes s{rois.size(0), batch_size, channels, height, width, pooled_height, pooled_width,
                          spatial_scale, static_cast<int>(sampling_ratio), aligned, nhwc};
    roi_align_backward_cuda_launch(cuda_dtype(grad), grad.data_ptr(), rois.data_ptr(), acc.data_ptr(), s,
                                   c10::cuda::getCurrentCUDAStream().stream());
  }
  return reduced ? acc.to(grad.scalar_type()) : acc;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) {
  m.impl("roi_align", &roi_align_forward_cuda);
  m.impl("roi_align_backward", &roi_align_backward_cuda);
}

}  // namespace dapo_fast
