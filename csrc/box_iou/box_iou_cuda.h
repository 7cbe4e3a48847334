// Raw-pointer launcher of the box_iou CUDA kernel (no torch or CUDA types).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

// a [batch, n, 4], b [batch, m, 4] contiguous; out [batch, n, m].
void box_iou_cuda_launch(DType dtype, const void* a, const void* b, void* out, int64_t batch, int64_t n, int64_t m,
                         void* stream);

}  // namespace dapo_fast
