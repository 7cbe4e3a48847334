// Raw-pointer launchers of the box_encode / box_decode CUDA kernels (no torch or CUDA types).
// Rows of 4 values, contiguous.
#pragma once
#include <cstdint>

#include "../common/dtype.h"
#include "box_coder_common.h"

namespace dapo_fast {

void box_encode_cuda_launch(DType dtype, const void* proposals, const void* targets, void* out, int64_t rows,
                            const box_math::Weights& weights, void* stream);
void box_encode_backward_cuda_launch(DType dtype, const void* grad, const void* proposals, const void* targets,
                                     void* grad_proposals, void* grad_targets, int64_t rows,
                                     const box_math::Weights& weights, void* stream);
void box_decode_cuda_launch(DType dtype, const void* deltas, const void* boxes, void* out, int64_t rows,
                            const box_math::Weights& weights, double scale_clamp, void* stream);
void box_decode_backward_cuda_launch(DType dtype, const void* grad, const void* deltas, const void* boxes,
                                     void* grad_deltas, void* grad_boxes, int64_t rows,
                                     const box_math::Weights& weights, double scale_clamp, void* stream);

}  // namespace dapo_fast
