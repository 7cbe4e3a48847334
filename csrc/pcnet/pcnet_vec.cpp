#include "pcnet_vec.h"

#include <limits>

#include "../common/cpu_clones.h"

namespace dapo_fast {
namespace pcnet_vec {
namespace {

constexpr int kLanes = 8;

template <typename T>
inline T max_product_impl(const T* __restrict a, const T* __restrict b, int64_t n) {
  T acc[kLanes];
  for (int j = 0; j < kLanes; ++j) acc[j] = -std::numeric_limits<T>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      const T v = a[i + j] * b[i + j];
      acc[j] = v > acc[j] ? v : acc[j];
    }
  }
  for (; i < n; ++i) {
    const T v = a[i] * b[i];
    acc[0] = v > acc[0] ? v : acc[0];
  }
  T best = acc[0];
  for (int j = 1; j < kLanes; ++j) best = acc[j] > best ? acc[j] : best;
  return best;
}

template <typename T>
inline T dot_impl(const T* __restrict a, const T* __restrict b, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  T s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

template <typename T>
inline T sum_impl(const T* __restrict a, int64_t n) {
  T acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j];
  for (; i < n; ++i) acc[0] += a[i];
  T s = 0;
  for (int j = 0; j < kLanes; ++j) s += acc[j];
  return s;
}

}  // namespace

DAPO_CPU_CLONES float max_product(const float* a, const float* b, int64_t n) { return max_product_impl(a, b, n); }
DAPO_CPU_CLONES double max_product(const double* a, const double* b, int64_t n) { return max_product_impl(a, b, n); }
DAPO_CPU_CLONES float dot(const float* a, const float* b, int64_t n) { return dot_impl(a, b, n); }
DAPO_CPU_CLONES double dot(const double* a, const double* b, int64_t n) { return dot_impl(a, b, n); }
DAPO_CPU_CLONES float sum(const float* a, int64_t n) { return sum_impl(a, n); }
DAPO_CPU_CLONES double sum(const double* a, int64_t n) { return sum_impl(a, n); }

}  // namespace pcnet_vec
}  // namespace dapo_fast
