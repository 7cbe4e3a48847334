// Contiguous reductions of the PCNet CPU kernels, compiled per ISA (pcnet_vec.cpp). Eight
// interleaved partial results in a fixed order: the same bits on every ISA and thread count.
#pragma once
#include <cstdint>

namespace dapo_fast {
namespace pcnet_vec {

// max_i a[i] * b[i] (-inf for n == 0; NaN products are skipped)
float max_product(const float* a, const float* b, int64_t n);
double max_product(const double* a, const double* b, int64_t n);
// sum_i a[i] * b[i]
float dot(const float* a, const float* b, int64_t n);
double dot(const double* a, const double* b, int64_t n);
// sum_i a[i]
float sum(const float* a, int64_t n);
double sum(const double* a, int64_t n);

}  // namespace pcnet_vec
}  // namespace dapo_fast
