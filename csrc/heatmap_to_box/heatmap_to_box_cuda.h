// Raw-pointer launcher of the heatmap_to_box CUDA kernel (no torch or CUDA types).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

// heatmaps [n, h, w] contiguous; scratch: labels int32 [n, h*w], boxes int32 [n, 4, h*w],
// conf float64 [n, h*w]; out [n, 4] float32.
void heatmap_to_box_cuda_launch(DType dtype, const void* heatmaps, int32_t* labels, int32_t* boxes, double* conf,
                                float* out, int64_t n, int64_t h, int64_t w, double rel_threshold,
                                double conf_threshold, bool tozero, void* stream);

}  // namespace dapo_fast
