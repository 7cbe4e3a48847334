// Raw-pointer launcher of the self_taught_targets CUDA kernel (no torch or CUDA types).
#pragma once
#include <cstdint>

#include "../box_coder/box_coder_common.h"
#include "../common/dtype.h"

namespace dapo_fast {

// boxes [b, j, 4], scores [b, p, j] contiguous; deltas [b, p, j, 4], weights [b, p, j].
void self_taught_targets_cuda_launch(DType dtype, const void* boxes, const void* scores, void* deltas, void* weights,
                                     int64_t b, int64_t p, int64_t j, double iou_threshold, double score_gap,
                                     const box_math::Weights& box_weights, void* stream);

}  // namespace dapo_fast
