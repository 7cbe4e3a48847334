// Maps a DType tag to the CUDA element type and its accumulation type (.cu files only).
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "dtype.h"

namespace dapo_fast {

template <typename T> struct AccType { using type = T; };
template <> struct AccType<__half> { using type = float; };
template <> struct AccType<__nv_bfloat16> { using type = float; };

__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }

template <typename T> __device__ __forceinline__ T from_acc(float v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16(v); }
template <typename T> __device__ __forceinline__ T from_acc(double v) { return static_cast<T>(v); }

// Calls f.template operator()<scalar_t>() with the CUDA type for `dtype`.
template <typename F>
void dispatch_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: f(float{}); break;
    case DType::Float64: f(double{}); break;
    case DType::Float16: f(__half{}); break;
    case DType::BFloat16: f(__nv_bfloat16{}); break;
  }
}

// A row of 4 values (a box) in the accumulation type, and back.
template <typename acc_t, typename scalar_t>
__device__ __forceinline__ void load4(const scalar_t* p, acc_t* v) {
  for (int k = 0; k < 4; ++k) v[k] = static_cast<acc_t>(to_acc(p[k]));
}
template <typename acc_t, typename scalar_t>
__device__ __forceinline__ void store4(const acc_t* v, scalar_t* p) {
  for (int k = 0; k < 4; ++k) p[k] = from_acc<scalar_t>(v[k]);
}

}  // namespace dapo_fast
