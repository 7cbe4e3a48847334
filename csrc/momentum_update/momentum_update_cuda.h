// Raw-pointer launcher of the multi-tensor EMA (CUDA).
#pragma once
#include <cstdint>

#include "../common/dtype.h"

namespace dapo_fast {

// chunks: device int64 [n_chunks, 3] rows (tensor, begin, end); pointers: device int64
// [n_tensors, 2] rows (teacher address, student address). All tensors share `dtype`.
void momentum_update_cuda_launch(DType dtype, const int64_t* chunks, int64_t n_chunks, const int64_t* pointers,
                                 double momentum, void* stream);

}  // namespace dapo_fast
