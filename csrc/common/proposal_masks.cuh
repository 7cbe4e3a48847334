// Device helpers shared by the CUDA kernels of the response-vs-proposal-mask ops
// (proposal_alignment, soft_iou, region_ambiguity). .cu files only.
#pragma once
#include <cstdint>

#include "cuda_dtype.cuh"

namespace dapo_fast {

// A mask value in the accumulation type: bytes (bool / uint8) or the response's type.
template <typename acc_t>
__device__ __forceinline__ acc_t mask_value(uint8_t v) { return static_cast<acc_t>(v); }
template <typename acc_t, typename T>
__device__ __forceinline__ acc_t mask_value(T v) { return static_cast<acc_t>(to_acc(v)); }

// Calls f(scalar_t{}, mask_t{}) with the CUDA response type and the mask element type.
template <typename F>
void with_mask_types(DType dtype, bool masks_are_bytes, F&& f) {
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    if (masks_are_bytes) {
      f(scalar_t{}, uint8_t{});
    } else {
      f(scalar_t{}, scalar_t{});
    }
  });
}

}  // namespace dapo_fast
