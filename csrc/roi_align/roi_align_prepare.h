// The one entry of the RoIAlign ops, registered for CPU and CUDA alike (roi_align_entry<Kernels>):
// argument checks, integer ranges, layout choice, output allocation and the answers that need no
// kernel, then the device's kernel (Kernels::forward / backward, in roi_align_cpu.cpp and
// roi_align_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/checks.h"
#include "roi_align_common.h"

namespace dapo_fast {

inline void check_roi_align_args(const at::Tensor& feature, const char* feature_name, int64_t feature_dim,
                                 const at::Tensor& rois, int64_t pooled_height, int64_t pooled_width,
                                 int64_t sampling_ratio) {
  check_dim(feature, feature_dim, feature_name);
  check_floating(feature, feature_name);
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, "rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), got ",
              rois.sizes());
  check_same_dtype(feature, feature_name, rois, "rois");
  check_same_device(feature, feature_name, rois, "rois");
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, "output_size must be positive, got (", pooled_height, ", ",
              pooled_width, ")");
  checked_int(pooled_height, "pooled_height", 1);
  checked_int(pooled_width, "pooled_width", 1);
  // any value <= 0 means adaptive sampling
  checked_int(sampling_ratio, "sampling_ratio", std::numeric_limits<int32_t>::min(), kMaxSamplingRatio);
}

struct RoiAlignForward {
  double spatial_scale = 1;
  int pooled_height = 0, pooled_width = 0, sampling_ratio = 0;
  bool aligned = false;
  at::Tensor input;       // contiguous in its own layout: NCHW, or NHWC when channels_last
  at::Tensor rois;        // contiguous [K, 5]
  at::Tensor out_buffer;  // [K, C, PH, PW], or [K, PH, PW, C] when out_channels_last
  at::Tensor out;         // out_buffer seen as [K, C, PH, PW]: what the op returns
  bool channels_last = false;      // the input
  bool out_channels_last = false;  // the output: a channels_last input's, when kept
  bool done = false;      // out already holds the answer (empty output, or no pixel to sample)
};

inline RoiAlignForward prepare_roi_align_forward(const at::Tensor& input, const at::Tensor& rois,
                                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                                 int64_t sampling_ratio, bool aligned,
                                                 bool keep_channels_last = false) {
  check_roi_align_args(input, "input", 4, rois, pooled_height, pooled_width, sampling_ratio);
  checked_int(input.size(2), "input height", 0);
  checked_int(input.size(3), "input width", 0);
  RoiAlignForward p;
  p.spatial_scale = spatial_scale;
  p.pooled_height = static_cast<int>(pooled_height);
  p.pooled_width = static_cast<int>(pooled_width);
  p.sampling_ratio = static_cast<int>(sampling_ratio);
  p.aligned = aligned;
  p.channels_last = is_channels_last(input);
  p.out_channels_last = p.channels_last && keep_channels_last;
  p.input = p.channels_last ? input : input.contiguous();
  p.rois = rois.contiguous();
  const int64_t k = p.rois.size(0), c = input.size(1);
  check_output_numel({k, c, pooled_height, pooled_width}, "the output [K, C, pooled_height, pooled_width]");
  p.out_buffer = p.out_channels_last ? at::empty({k, pooled_height, pooled_width, c}, input.options())
                                     : at::empty({k, c, pooled_height, pooled_width}, input.options());
  p.out = p.out_channels_last ? p.out_buffer.permute({0, 3, 1, 2}) : p.out_buffer;
  if (p.out.numel() == 0) {
    p.done = true;
  } else if (input.size(2) == 0 || input.size(3) == 0) {  // no pixel to sample
    p.out.zero_();
    p.done = true;
  }
  return p;
}

struct RoiAlignBackward {
  double spatial_scale = 1;
  int pooled_height = 0, pooled_width = 0, sampling_ratio = 0;
  bool aligned = false;
  int64_t batch_size = 0, channels = 0, height = 0, width = 0;  // of the input (height, width fit an int)
  at::Tensor grad;        // contiguous in its own layout: NCHW, or NHWC when channels_last
  at::Tensor rois;        // contiguous [K, 5]
  at::Tensor grad_input;  // [N, C, H, W] in grad's layout; float for half/bfloat16 grads; zeros
                          // unless the kernel writes every element (see roi_align_backward_entry)
  bool channels_last = false;
  bool done = false;      // nothing to add: no RoI, or an empty input

  // Half/bfloat16 gradients accumulate in float and are rounded once at the end.
  at::Tensor result() const {
    return grad_input.scalar_type() == grad.scalar_type() ? grad_input : grad_input.to(grad.scalar_type());
  }
};

inline RoiAlignBackward prepare_roi_align_backward(const at::Tensor& grad, const at::Tensor& rois,
                                                   double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                                   int64_t batch_size, int64_t channels, int64_t height,
                                                   int64_t width, int64_t sampling_ratio, bool aligned,
                                                   bool zero_grad_input = true) {
  check_roi_align_args(grad, "grad", 4, rois, pooled_height, pooled_width, sampling_ratio);
  TORCH_CHECK(batch_size >= 0 && channels >= 0 && height >= 0 && width >= 0,
              "input size (batch_size, channels, height, width) must be non-negative");
  checked_int(height, "height", 0);
  checked_int(width, "width", 0);
  TORCH_CHECK(grad.size(0) == rois.size(0) && grad.size(1) == channels && grad.size(2) == pooled_height &&
                  grad.size(3) == pooled_width,
              "grad must have shape [K, channels, pooled_height, pooled_width] = [", rois.size(0), ", ", channels,
              ", ", pooled_height, ", ", pooled_width, "], got ", grad.sizes());
  RoiAlignBackward p;
  p.spatial_scale = spatial_scale;
  p.pooled_height = static_cast<int>(pooled_height);
  p.pooled_width = static_cast<int>(pooled_width);
  p.sampling_ratio = static_cast<int>(sampling_ratio);
  p.aligned = aligned;
  p.batch_size = batch_size;
  p.channels = channels;
  p.height = height;
  p.width = width;
  p.channels_last = is_channels_last(grad);
  p.grad = p.channels_last ? grad : grad.contiguous();
  p.rois = rois.contiguous();
  const auto format = p.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const bool reduced = grad.scalar_type() == at::kHalf || grad.scalar_type() == at::kBFloat16;
  check_output_numel({batch_size, channels, height, width},
                     "the input gradient [batch_size, channels, height, width]");
  // (at::zeros ignores a memory format in its options, so allocate with the format and zero)
  p.grad_input = at::empty({batch_size, channels, height, width},
                           grad.options().dtype(reduced ? at::kFloat : grad.scalar_type()), format);
  p.done = p.grad_input.numel() == 0 || p.rois.size(0) == 0;
  if (zero_grad_input || p.done) p.grad_input.zero_();
  return p;
}

// torchvision's signatures; Kernels::forward(p) fills p.out_buffer, Kernels::backward(p) adds
// into p.grad_input, which is zeros unless Kernels::kBackwardWritesAll: then the kernel writes
// every element itself and a separate zeroing pass over the largest tensor is saved.
template <typename Kernels>
at::Tensor roi_align_entry(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                           int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio, bool aligned,
                           bool keep_channels_last) {
  const RoiAlignForward p = prepare_roi_align_forward(input, rois, spatial_scale, pooled_height, pooled_width,
                                                      sampling_ratio, aligned, keep_channels_last);
  if (!p.done) Kernels::forward(p);
  return p.out;
}

template <typename Kernels>
at::Tensor roi_align_backward_entry(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                                    int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                                    int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  const RoiAlignBackward p = prepare_roi_align_backward(grad, rois, spatial_scale, pooled_height, pooled_width,
                                                        batch_size, channels, height, width, sampling_ratio, aligned,
                                                        !Kernels::kBackwardWritesAll);
  if (!p.done) Kernels::backward(p);
  return p.result();
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_roi_align(torch::Library& m) {
  m.impl("roi_align", &roi_align_entry<Kernels>);
  m.impl("roi_align_backward", &roi_align_backward_entry<Kernels>);
}

}  // namespace dapo_fast
