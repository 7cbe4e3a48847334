// Argument checks of select_hard_negatives, shared by the CPU and CUDA entry points.
#pragma once
#include <string_view>

#include "../common/checks.h"
#include "hard_negatives_common.h"

namespace dapo_fast {

inline int parse_uniqueness(std::string_view name) {
  if (name == "pairwise") return hard_negative_math::kPairwise;
  if (name == "paper") return hard_negative_math::kPaper;
  TORCH_CHECK(false, "uniqueness must be 'pairwise' or 'paper', got '", name, "'");
}

inline void check_hard_negative_args(const at::Tensor& queries, const at::Tensor& text, int64_t num) {
  check_dim(queries, 3, "queries");
  check_dim(text, 2, "text");
  check_floating(queries, "queries");
  check_same_dtype(queries, "queries", text, "text");
  check_same_device(queries, "queries", text, "text");
  TORCH_CHECK(text.size(0) == queries.size(0) && text.size(1) == queries.size(2), "text must have shape [B, D] = [",
              queries.size(0), ", ", queries.size(2), "], got ", text.sizes());
  TORCH_CHECK(num >= 0, "num must be >= 0, got ", num);
  TORCH_CHECK(queries.size(1) > 0 || queries.size(0) <= 1 || num == 0, "queries must hold at least one query per image (N > 0)");
}

}  // namespace dapo_fast
