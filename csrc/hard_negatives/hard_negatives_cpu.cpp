// QueryMatch's greedy hard-negative selection, CPU. Two BLAS calls give every query-query
// cosine [B*N, B*N] and every text-query product [B, B*N] (B=32, N=20: 640 x 640); then one
// task per text b runs all greedy steps with its running uniqueness in a private array.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "hard_negatives_checks.h"

namespace dapo_fast {
namespace {

using namespace hard_negative_math;

template <typename T>
void select_cpu(const T* cos, const T* sim, int64_t b_count, int64_t n, int64_t num, int mode, int64_t* out) {
  const int64_t others = b_count - 1, bn = b_count * n;
  at::parallel_for(0, b_count, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> diff(others * n), uniq(others * n), max_cos(others * n);
    std::vector<int64_t> picked(others);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t j = 0; j < others; ++j) {
        const T* s = sim + b * bn + other_image(b, j) * n;
        T lo = s[0], hi = s[0];
        for (int64_t i = 1; i < n; ++i) {
          lo = s[i] < lo ? s[i] : lo;
          hi = s[i] > hi ? s[i] : hi;
        }
        for (int64_t i = 0; i < n; ++i) diff[j * n + i] = minmax(s[i], lo, hi);
      }
      std::fill(uniq.begin(), uniq.end(), T(1));
      std::fill(max_cos.begin(), max_cos.end(), -std::numeric_limits<T>::infinity());
      for (int64_t step = 0; step < num; ++step) {
        for (int64_t j = 0; j < others; ++j) {
          const int64_t best = pick_candidate(diff.data() + j * n, uniq.data() + j * n, n);
          out[(b * others + j) * num + step] = best;
          picked[j] = other_image(b, j) * n + best;
        }
        if (step + 1 == num) break;  // uniqueness after the last step is never read
        for (int64_t j = 0; j < others; ++j) {
          for (int64_t i = 0; i < n; ++i) {
            const int64_t id = other_image(b, j) * n + i;
            const T* c = cos + id * bn;
            if (mode == kPairwise) {
              T u = uniq[j * n + i];
              for (int64_t p = 0; p < others; ++p) {
                const T d = pair_distance(c[picked[p]], picked[p] == id);
                u = d < u ? d : u;
              }
              uniq[j * n + i] = u;
            } else {
              T m = max_cos[j * n + i];
              for (int64_t p = 0; p < others; ++p) {
                const T v = pair_cos(c[picked[p]], picked[p] == id);
                m = v > m ? v : m;
              }
              max_cos[j * n + i] = m;
            }
          }
          if (mode == kPaper) {
            T lo = -max_cos[j * n], hi = lo;
            for (int64_t i = 1; i < n; ++i) {
              const T v = -max_cos[j * n + i];
              lo = v < lo ? v : lo;
              hi = v > hi ? v : hi;
            }
            for (int64_t i = 0; i < n; ++i) uniq[j * n + i] = minmax(-max_cos[j * n + i], lo, hi);
          }
        }
      }
    }
  });
}

constexpr double kNormEps = 1e-12;

at::Tensor select_hard_negatives_cpu(const at::Tensor& queries, const at::Tensor& text, int64_t num,
                                     c10::string_view uniqueness) {
  const int mode = parse_uniqueness(std::string_view(uniqueness.data(), uniqueness.size()));
  check_hard_negative_args(queries, text, num);
  const int64_t b = queries.size(0), n = queries.size(1);
  at::Tensor out = at::empty({b, b > 0 ? b - 1 : 0, num}, queries.options().dtype(at::kLong));
  if (b <= 1 || num == 0) return out;
  const auto ct = queries.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor q = queries.to(ct).reshape({b * n, queries.size(2)}).contiguous();
  const at::Tensor qn = q.div(q.norm(2, {-1}, true).clamp_min(kNormEps));
  const at::Tensor cos = qn.mm(qn.t()).contiguous();
  const at::Tensor sim = text.to(ct).mm(q.t()).contiguous();  // [B, B*N]
  if (ct == at::kDouble)
    select_cpu<double>(cos.data_ptr<double>(), sim.data_ptr<double>(), b, n, num, mode, out.data_ptr<int64_t>());
  else
    select_cpu<float>(cos.data_ptr<float>(), sim.data_ptr<float>(), b, n, num, mode, out.data_ptr<int64_t>());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { m.impl("select_hard_negatives", &select_hard_negatives_cpu); }

}  // namespace dapo_fast
