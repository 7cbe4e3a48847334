// Contiguous vector loops used by several CPU kernels, compiled once per ISA (see cpu_clones.h).
// Reductions use a fixed number of interleaved partial results in a fixed order: the same bits
// on every ISA and thread count.
#pragma once
#include <cstdint>

namespace dapo_fast {
namespace cpu_vec {

// y[i] += a * x[i]
void axpy(int64_t n, float a, const float* x, float* y);
void axpy(int64_t n, double a, const double* x, double* y);

// max_i a[i] * b[i] (-inf for n == 0; NaN when a product is NaN, as torch.max)
float max_product(const float* a, const float* b, int64_t n);
double max_product(const double* a, const double* b, int64_t n);
// sum_i a[i] * b[i] (8 partial sums)
float dot(const float* a, const float* b, int64_t n);
double dot(const double* a, const double* b, int64_t n);
// sum_i a[i] (8 partial sums)
float sum(const float* a, int64_t n);
double sum(const double* a, int64_t n);
// sum_i (x[i] - y[i])^2, or sum_i x[i]^2 when y is null: 16 partial sums in the input type,
// added in double (vectorisable without reassociation flags)
double sum_sq(const float* x, const float* y, int64_t n);
double sum_sq(const double* x, const double* y, int64_t n);

}  // namespace cpu_vec
}  // namespace dapo_fast
