// Argument checks of the box ops, shared by the CPU and CUDA entry points.
#pragma once
#include <vector>

#include "../common/checks.h"
#include "box_ops_common.h"

namespace dapo_fast {

inline void check_rows4(const at::Tensor& t, const char* name) {
  check_floating(t, name);
  TORCH_CHECK(t.dim() == 2 && t.size(1) == 4, name, " must have shape [K, 4], got ", t.sizes());
}

inline void check_pair(const at::Tensor& a, const char* a_name, const at::Tensor& b, const char* b_name) {
  check_rows4(a, a_name);
  check_rows4(b, b_name);
  TORCH_CHECK(a.size(0) == b.size(0), a_name, " and ", b_name, " must have the same number of rows, got ", a.size(0),
              " and ", b.size(0));
  check_same_dtype(a, a_name, b, b_name);
  check_same_device(a, a_name, b, b_name);
}

inline box_math::Weights parse_weights(c10::ArrayRef<double> w) {
  TORCH_CHECK(w.size() == 4, "weights must have 4 values (wx, wy, ww, wh), got ", w.size());
  return box_math::Weights{w[0], w[1], w[2], w[3]};
}

}  // namespace dapo_fast
