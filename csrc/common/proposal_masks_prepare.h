// Checks and preparation shared by the ops that score response maps [B, S, H, W] against
// proposal masks [B, P, H, W] (proposal_alignment, soft_iou, region_ambiguity); each op's
// <op>_prepare.h builds its one entry from these.
#pragma once
#include "checks.h"
#include "proposal_masks.h"

namespace dapo_fast {

inline void check_response_masks(const at::Tensor& response, const at::Tensor& masks) {
  check_dim(response, 4, "response");
  check_floating(response, "response");
  check_dim(masks, 4, "masks");
  TORCH_CHECK(masks.size(0) == response.size(0) && masks.size(2) == response.size(2) &&
                  masks.size(3) == response.size(3),
              "masks must have shape [B, P, H, W] matching response [B, S, H, W] = ", response.sizes(), ", got ",
              masks.sizes());
  TORCH_CHECK(masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte ||
                  masks.scalar_type() == response.scalar_type(),
              "masks must be bool, uint8 or response's dtype ", response.scalar_type(), ", got ", masks.scalar_type());
  check_same_device(response, "response", masks, "masks");
}

inline void check_mask_valid(const at::Tensor& response, const at::Tensor& masks, const at::Tensor& mask_valid) {
  TORCH_CHECK(mask_valid.dim() == 2 && mask_valid.size(0) == masks.size(0) && mask_valid.size(1) == masks.size(1),
              "mask_valid must have shape [B, P] = ", masks.sizes().slice(0, 2), ", got ", mask_valid.sizes());
  TORCH_CHECK(mask_valid.scalar_type() == at::kBool, "mask_valid must be bool, got ", mask_valid.scalar_type());
  check_same_device(response, "response", mask_valid, "mask_valid");
}

// Masks held as bytes (bool or uint8) rather than in the response's floating type.
inline bool masks_are_bytes(const at::Tensor& masks) {
  return masks.scalar_type() == at::kBool || masks.scalar_type() == at::kByte;
}

inline MaskSizes mask_sizes(const at::Tensor& response, const at::Tensor& masks) {
  return MaskSizes{response.size(0), response.size(1), masks.size(1), response.size(2) * response.size(3)};
}

}  // namespace dapo_fast
