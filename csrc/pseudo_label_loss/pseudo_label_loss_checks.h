// Argument checks of the pseudo-label loss ops, shared by the CPU and CUDA entry points.
#pragma once
#include <c10/util/string_view.h>

#include <optional>
#include <string_view>

#include "../common/checks.h"
#include "pseudo_label_loss_common.h"

namespace dapo_fast {

inline int parse_loss_mode(std::string_view mode) {
  if (mode == "none") return pseudo_label_math::kModeNone;
  if (mode == "fne") return pseudo_label_math::kModeFne;
  if (mode == "fnc") return pseudo_label_math::kModeFnc;
  TORCH_CHECK(false, "mode must be one of 'none', 'fne', 'fnc', got '", mode, "'");
}

inline int parse_loss_reduction(std::string_view reduction) {
  if (reduction == "mean") return pseudo_label_math::kReduceMean;
  if (reduction == "sum") return pseudo_label_math::kReduceSum;
  if (reduction == "none") return pseudo_label_math::kReduceNone;
  TORCH_CHECK(false, "reduction must be one of 'mean', 'sum', 'none', got '", reduction, "'");
}

inline void check_pseudo_label_loss_args(const at::Tensor& phrase, const at::Tensor& region,
                                         const at::Tensor& teacher_phrase, const at::Tensor& teacher_region,
                                         const at::Tensor& phrase_valid, const at::Tensor& region_valid,
                                         const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau,
                                         int mode) {
  check_dim(phrase, 3, "phrase");
  check_dim(region, 3, "region");
  check_dim(teacher_phrase, 3, "teacher_phrase");
  check_dim(teacher_region, 3, "teacher_region");
  check_floating(phrase, "phrase");
  check_same_dtype(phrase, "phrase", region, "region");
  check_same_dtype(phrase, "phrase", teacher_phrase, "teacher_phrase");
  check_same_dtype(phrase, "phrase", teacher_region, "teacher_region");
  check_same_device(phrase, "phrase", region, "region");
  check_same_device(phrase, "phrase", teacher_phrase, "teacher_phrase");
  check_same_device(phrase, "phrase", teacher_region, "teacher_region");
  check_same_device(phrase, "phrase", phrase_valid, "phrase_valid");
  check_same_device(phrase, "phrase", region_valid, "region_valid");
  const int64_t b = phrase.size(0), q = phrase.size(1), k = region.size(1);
  TORCH_CHECK(region.size(0) == b && region.size(2) == phrase.size(2), "region must have shape [B, K, D] = [", b,
              ", K, ", phrase.size(2), "] like phrase, got ", region.sizes());
  TORCH_CHECK(teacher_phrase.size(0) == b && teacher_phrase.size(1) == q,
              "teacher_phrase must have shape [B, Q, D'] = [", b, ", ", q, ", D'], got ", teacher_phrase.sizes());
  TORCH_CHECK(teacher_region.size(0) == b && teacher_region.size(1) == k &&
                  teacher_region.size(2) == teacher_phrase.size(2),
              "teacher_region must have shape [B, K, D'] = [", b, ", ", k, ", ", teacher_phrase.size(2), "], got ",
              teacher_region.sizes());
  TORCH_CHECK(phrase_valid.scalar_type() == at::kBool && phrase_valid.dim() == 2 && phrase_valid.size(0) == b &&
                  phrase_valid.size(1) == q,
              "phrase_valid must be a bool tensor of shape [B, Q] = [", b, ", ", q, "], got ",
              phrase_valid.scalar_type(), " ", phrase_valid.sizes());
  TORCH_CHECK(region_valid.scalar_type() == at::kBool && region_valid.dim() == 2 && region_valid.size(0) == b &&
                  region_valid.size(1) == k,
              "region_valid must be a bool tensor of shape [B, K] = [", b, ", ", k, "], got ",
              region_valid.scalar_type(), " ", region_valid.sizes());
  if (fn_mask.has_value()) {
    const at::Tensor& fn = *fn_mask;
    check_same_device(phrase, "phrase", fn, "fn_mask");
    TORCH_CHECK(fn.scalar_type() == at::kBool && fn.dim() == 3 && fn.size(0) == b && fn.size(1) == b &&
                    fn.size(2) == k,
                "fn_mask must be a bool tensor of shape [B, B, K] = [", b, ", ", b, ", ", k, "], got ",
                fn.scalar_type(), " ", fn.sizes());
  } else {
    TORCH_CHECK(mode == pseudo_label_math::kModeNone, "fn_mask is required for mode 'fne' and 'fnc'");
  }
  TORCH_CHECK(tau > 0, "tau must be > 0, got ", tau);
  TORCH_CHECK(teacher_tau > 0, "teacher_tau must be > 0, got ", teacher_tau);
}

}  // namespace dapo_fast
