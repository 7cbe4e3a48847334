// QueryMatch's greedy hard-negative selection, CPU. Two BLAS calls give every query-query
// cosine [B*N, B*N] and every text-query product [B, B*N] (B=32, N=20: 640 x 640); then one
// task per text b runs all greedy steps with its running uniqueness in a private array.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "select_hard_negatives_prepare.h"
#include "../common/parallel.h"

namespace dapo_fast {
namespace {

using namespace hard_negative_math;

template <typename T>
void select_cpu(const T* cos, const T* sim, int64_t b_count, int64_t n, int64_t num, int mode, int64_t* out) {
  const int64_t others = b_count - 1, bn = b_count * n;
  dapo_fast::parallel_for(0, b_count, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> diff(others * n), uniq(others * n), max_cos(others * n);
    std::vector<int64_t> picked(others);
    for (int64_t b = begin; b < end; ++b) {
      for (int64_t j = 0; j < others; ++j) {
        normalise_group(sim + b * bn + other_image(b, j) * n, n, /*negate=*/false, diff.data() + j * n);
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
                u = minimum(d, u);
              }
              uniq[j * n + i] = u;
            } else {
              T m = max_cos[j * n + i];
              for (int64_t p = 0; p < others; ++p) {
                const T v = pair_cos(c[picked[p]], picked[p] == id);
                m = maximum(v, m);
              }
              max_cos[j * n + i] = m;
            }
          }
          if (mode == kPaper) normalise_group(max_cos.data() + j * n, n, /*negate=*/true, uniq.data() + j * n);
        }
      }
    }
  });
}

struct CpuKernels {
  static void run(const HardNegatives& p) {
    int64_t* out = p.out.data_ptr<int64_t>();
    if (p.cos.scalar_type() == at::kDouble)
      select_cpu<double>(p.cos.data_ptr<double>(), p.sim.data_ptr<double>(), p.batch, p.queries, p.num, p.mode, out);
    else
      select_cpu<float>(p.cos.data_ptr<float>(), p.sim.data_ptr<float>(), p.batch, p.queries, p.num, p.mode, out);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_select_hard_negatives<CpuKernels>(m); }

}  // namespace dapo_fast
