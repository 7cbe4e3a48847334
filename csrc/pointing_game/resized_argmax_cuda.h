// Raw-pointer launcher of the resized_argmax CUDA kernel (no torch or CUDA types).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

// heatmaps [n, h, w] contiguous, sizes [n, 2] int64 on the device, out [n, 2] int64.
void resized_argmax_cuda_launch(DType dtype, const void* heatmaps, const int64_t* sizes, int64_t* out, int64_t n,
                                int64_t h, int64_t w, void* stream);

}  // namespace dapo_fast
