// The one entry of select_hard_negatives, registered for CPU and CUDA alike
// (select_hard_negatives_entry<Kernels>): checks, the output, and the two products the greedy
// selection reads (every query-query cosine, every text-query product: one BLAS / cuBLAS call
// each), then the device's selection kernel (Kernels::run, in select_hard_negatives_cpu.cpp and
// select_hard_negatives_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <string_view>

#include "../common/checks.h"
#include "select_hard_negatives_common.h"

namespace dapo_fast {

inline int parse_uniqueness(c10::string_view uniqueness) {
  const std::string_view name(uniqueness.data(), uniqueness.size());
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

struct HardNegatives {
  at::Tensor out;  // [B, B-1, num] int64
  at::Tensor cos;  // [B*N, B*N] cosines between every two queries (float or double)
  at::Tensor sim;  // [B, B*N] text-query products
  int mode = hard_negative_math::kPairwise;
  int64_t batch = 0, queries = 0, num = 0;  // B, N, negatives per other image
  bool done = false;  // fewer than two images, or num == 0: out is complete (empty)
};

constexpr double kQueryNormEps = 1e-12;  // F.normalize's default

inline HardNegatives prepare_select_hard_negatives(const at::Tensor& queries, const at::Tensor& text, int64_t num,
                                                   c10::string_view uniqueness) {
  HardNegatives p;
  p.mode = parse_uniqueness(uniqueness);
  check_hard_negative_args(queries, text, num);
  const int64_t b = queries.size(0), n = queries.size(1);
  p.batch = b;
  p.queries = n;
  p.num = num;
  check_output_numel({b, b > 0 ? b - 1 : 0, num}, "the output [B, B - 1, num]");
  p.out = at::empty({b, b > 0 ? b - 1 : 0, num}, queries.options().dtype(at::kLong));
  if (b <= 1 || num == 0) {
    p.done = true;
    return p;
  }
  const auto ct = queries.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor q = queries.to(ct).reshape({b * n, queries.size(2)}).contiguous();
  const at::Tensor qn = q.div(q.norm(2, {-1}, true).clamp_min(kQueryNormEps));
  p.cos = qn.mm(qn.t()).contiguous();
  p.sim = text.to(ct).mm(q.t()).contiguous();
  return p;
}

template <typename Kernels>
at::Tensor select_hard_negatives_entry(const at::Tensor& queries, const at::Tensor& text, int64_t num,
                                       c10::string_view uniqueness) {
  const HardNegatives p = prepare_select_hard_negatives(queries, text, num, uniqueness);
  if (!p.done) Kernels::run(p);
  return p.out;
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_select_hard_negatives(torch::Library& m) {
  m.impl("select_hard_negatives", &select_hard_negatives_entry<Kernels>);
}

}  // namespace dapo_fast
