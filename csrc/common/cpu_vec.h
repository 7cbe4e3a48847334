// Contiguous vector loops used by several CPU kernels, compiled once per ISA (see cpu_clones.h).
#pragma once
#include <cstdint>

namespace dapo_fast {
namespace cpu_vec {

// y[i] += a * x[i]
void axpy(int64_t n, float a, const float* x, float* y);
void axpy(int64_t n, double a, const double* x, double* y);

}  // namespace cpu_vec
}  // namespace dapo_fast
