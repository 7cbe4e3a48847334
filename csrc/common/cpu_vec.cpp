#include "cpu_vec.h"

#include "cpu_clones.h"

namespace dapo_fast {
namespace cpu_vec {

DAPO_CPU_CLONES void axpy(int64_t n, float a, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

DAPO_CPU_CLONES void axpy(int64_t n, double a, const double* __restrict x, double* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace cpu_vec
}  // namespace dapo_fast
