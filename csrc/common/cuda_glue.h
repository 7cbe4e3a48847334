// Helpers for the *_cuda_impl.cpp tensor glue files (host C++, no CUDA types).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/util/Exception.h>

#include "dtype.h"

namespace dapo_fast {

inline DType cuda_dtype(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return DType::Float32;
    case at::kDouble: return DType::Float64;
    case at::kHalf: return DType::Float16;
    case at::kBFloat16: return DType::BFloat16;
    default: TORCH_CHECK(false, "unsupported dtype ", t.scalar_type(), " (float16/bfloat16/float32/float64 only)");
  }
}

// The current stream of the current device, as the void* the pure CUDA launchers take.
inline void* current_cuda_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace dapo_fast
