// Raw-pointer launchers of the RoIAlign CUDA kernels. Plain C++: included by the tensor glue
// (roi_align_cuda_impl.cpp) without CUDA or torch types crossing the boundary.
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

struct RoiAlignSizes {
  int64_t rois, batch, channels, height, width, pooled_h, pooled_w;
  double spatial_scale;
  int sampling_ratio;
  bool aligned;
  bool channels_last;      // input (forward) or grad_input (backward) is NHWC in memory
  bool out_channels_last;  // out (forward) or grad (backward) is [K, PH, PW, C] in memory
};

// out: [K, C, PH, PW] (or [K, PH, PW, C] when out_channels_last). A RoI whose batch index is
// outside [0, N) gets NaN, never an out-of-bounds read.
void roi_align_forward_cuda_launch(DType dtype, const void* input, const void* rois, void* out,
                                   const RoiAlignSizes& s, void* stream);

// grad_input_acc: zero-filled, float for half/bfloat16 inputs, else the input type; added to
// with atomics (the CUDA backward is not bitwise deterministic; the CPU one is).
void roi_align_backward_cuda_launch(DType dtype, const void* grad, const void* rois, void* grad_input_acc,
                                    const RoiAlignSizes& s, void* stream);

}  // namespace dapo_fast
