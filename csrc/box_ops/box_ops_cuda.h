// Raw-pointer launchers of the box-op CUDA kernels (no torch or CUDA types). Rows of 4 values,
// contiguous; `weights` are (wx, wy, ww, wh).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

void box_iou_cuda_launch(DType dtype, const void* a, const void* b, void* out, int64_t batch, int64_t n, int64_t m,
                         void* stream);
void box_encode_cuda_launch(DType dtype, const void* proposals, const void* targets, void* out, int64_t rows,
                            const double* weights, void* stream);
void box_encode_backward_cuda_launch(DType dtype, const void* grad, const void* proposals, const void* targets,
                                     void* grad_proposals, void* grad_targets, int64_t rows, const double* weights,
                                     void* stream);
void box_decode_cuda_launch(DType dtype, const void* deltas, const void* boxes, void* out, int64_t rows,
                            const double* weights, double scale_clamp, void* stream);
void box_decode_backward_cuda_launch(DType dtype, const void* grad, const void* deltas, const void* boxes,
                                     void* grad_deltas, void* grad_boxes, int64_t rows, const double* weights,
                                     double scale_clamp, void* stream);
void self_taught_targets_cuda_launch(DType dtype, const void* boxes, const void* scores, void* deltas, void* weights,
                                     int64_t b, int64_t p, int64_t j, double iou_threshold, double score_gap,
                                     const double* box_weights, void* stream);
// reduction 0: out has n elements; 1/2: out is a scalar, partials is scratch of ceil(n / 4096) doubles.
void weighted_smooth_l1_cuda_launch(DType dtype, const void* input, const void* target, const void* weight, void* out,
                                    double* partials, int64_t n, double beta, int reduction, void* stream);
// grad: n elements (reduction 0) or a scalar.
void weighted_smooth_l1_backward_cuda_launch(DType dtype, const void* grad, const void* input, const void* target,
                                             const void* weight, void* out, int64_t n, double beta, int reduction,
                                             void* stream);

}  // namespace dapo_fast
