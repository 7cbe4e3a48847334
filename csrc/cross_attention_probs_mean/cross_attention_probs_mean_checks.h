// Argument checks of the cross_attention_probs_mean ops, shared by the CPU and CUDA entry points.
#pragma once
#include <optional>

#include "../common/checks.h"

namespace dapo_fast {

inline void check_probs_mean_args(const at::Tensor& q, const at::Tensor& k, const std::optional<at::Tensor>& key_bias) {
  check_dim(q, 4, "q");
  check_dim(k, 4, "k");
  check_floating(q, "q");
  check_same_dtype(q, "q", k, "k");
  check_same_device(q, "q", k, "k");
  TORCH_CHECK(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3),
              "k must have shape [B, heads, T, d] matching q [B, heads, HW, d] = ", q.sizes(), ", got ", k.sizes());
  if (key_bias.has_value() && key_bias->defined()) {
    const at::Tensor& b = *key_bias;
    check_dim(b, 2, "key_bias");
    TORCH_CHECK(b.size(0) == q.size(0) && b.size(1) == k.size(2), "key_bias must have shape [B, T] = [", q.size(0),
                ", ", k.size(2), "], got ", b.sizes());
    check_same_device(q, "q", b, "key_bias");
    check_floating(b, "key_bias");
  }
}

inline void check_probs_mean_out(const at::Tensor& out, const at::Tensor& q, const at::Tensor& k, const char* name) {
  check_dim(out, 3, name);
  TORCH_CHECK(out.size(0) == q.size(0) && out.size(1) == q.size(2) && out.size(2) == k.size(2), name,
              " must have shape [B, HW, T] = [", q.size(0), ", ", q.size(2), ", ", k.size(2), "], got ", out.sizes());
  check_same_device(q, "q", out, name);
  check_same_dtype(q, "q", out, name);
}

}  // namespace dapo_fast
