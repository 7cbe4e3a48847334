// Raw-pointer launchers of the weighted smooth-L1 CUDA kernels (no torch or CUDA types).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

// Number of doubles the sum / mean reduction needs as `partials` scratch.
int64_t weighted_smooth_l1_partials(int64_t n);
// reduction 0: out has n elements; 1/2: out is a scalar.
void weighted_smooth_l1_cuda_launch(DType dtype, const void* input, const void* target, const void* weight, void* out,
                                    double* partials, int64_t n, double beta, int reduction, void* stream);
// grad: n elements (reduction 0) or a scalar.
void weighted_smooth_l1_backward_cuda_launch(DType dtype, const void* grad, const void* input, const void* target,
                                             const void* weight, void* out, int64_t n, double beta, int reduction,
                                             void* stream);

}  // namespace dapo_fast
