// Argument checks of the PCNet ops, shared by the CPU and CUDA entry points.
#pragma once
#include <string>

#include "../common/checks.h"
#include "pcnet_common.h"

namespace dapo_fast {

inline void check_pcnet_args(const at::Tensor& response, const at::Tensor& masks) {
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

inline int parse_variant(const std::string& variant) {
  TORCH_CHECK(variant == "iou" || variant == "half_dice", "variant must be 'iou' or 'half_dice', got '", variant, "'");
  return variant == "iou" ? pcnet_math::kIoU : pcnet_math::kHalfDice;
}

}  // namespace dapo_fast
