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

// Per-pixel running top-2 of mask values: max1/idx1 the largest value and its proposal, max2 the
// second largest (equal values count twice). Branch-free selects, so the compiler vectorises.
void top2_update(const float* v, int p, float* max1, int* idx1, float* max2, int64_t n);
void top2_update(const double* v, int p, double* max1, int* idx1, double* max2, int64_t n);
// out[i] = idx1[i] == exclude ? max2[i] : max1[i] (the union of all masks but `exclude`)
void union_without(const float* max1, const int* idx1, const float* max2, int exclude, float* out, int64_t n);
void union_without(const double* max1, const int* idx1, const double* max2, int exclude, double* out, int64_t n);

}  // namespace pcnet_vec
}  // namespace dapo_fast
