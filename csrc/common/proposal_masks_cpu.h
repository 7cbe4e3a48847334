// Helpers shared by the CPU kernels of the response-vs-proposal-mask ops (proposal_alignment,
// soft_iou, region_ambiguity): per-image staging of masks and maps in the accumulation type, so
// the inner loops are plain contiguous float/double reductions (cpu_vec.h).
#pragma once
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "cpu_vec.h"
#include "proposal_masks_prepare.h"

namespace dapo_fast {
namespace proposal_masks_cpu {

// Masks of one image -> acc_t [P, HW]; invalid masks (valid != nullptr and false) become 0.
template <typename acc_t, typename mask_t>
void stage_masks(const mask_t* masks, const bool* valid, int64_t p, int64_t hw, std::vector<acc_t>& out) {
  out.resize(p * hw);
  for (int64_t k = 0; k < p; ++k) {
    acc_t* dst = out.data() + k * hw;
    const mask_t* src = masks + k * hw;
    if (valid != nullptr && !valid[k]) {
      for (int64_t i = 0; i < hw; ++i) dst[i] = acc_t(0);
    } else {
      for (int64_t i = 0; i < hw; ++i) dst[i] = static_cast<acc_t>(src[i]);
    }
  }
}

template <typename acc_t, typename scalar_t>
void stage_map(const scalar_t* src, int64_t hw, std::vector<acc_t>& out) {
  out.resize(hw);
  for (int64_t i = 0; i < hw; ++i) out[i] = static_cast<acc_t>(src[i]);
}

// Calls f(mask_t{}) with the element type the masks tensor holds (bool is read as uint8).
template <typename scalar_t, typename F>
void dispatch_mask(const at::Tensor& masks, F&& f) {
  if (masks_are_bytes(masks)) {
    f(uint8_t{});
  } else {
    f(scalar_t{});
  }
}

template <typename mask_t>
const mask_t* mask_ptr(const at::Tensor& masks) {
  return static_cast<const mask_t*>(masks.data_ptr());
}

}  // namespace proposal_masks_cpu
}  // namespace dapo_fast
