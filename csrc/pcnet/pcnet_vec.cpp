#include "pcnet_vec.h"

#include <cstring>
#include <limits>

#include "../common/cpu_clones.h"

namespace dapo_fast {
namespace pcnet_vec {
namespace {

constexpr int kLanes = 8;

// GCC/Clang vector extensions: the compiler does not vectorise a float max reduction written
// with ?: on scalars (it would have to assume no NaN), so spell the vector out. The maximum is
// exact whatever the order, so the lane split cannot change the result.
template <typename T>
struct Vec {
  static constexpr int kWidth = 32 / sizeof(T);
  typedef T type __attribute__((vector_size(32)));
};

template <typename T>
inline T max_product_impl(const T* __restrict a, const T* __restrict b, int64_t n) {
  using V = typename Vec<T>::type;
  constexpr int W = Vec<T>::kWidth;
  const T lowest = -std::numeric_limits<T>::infinity();
  V acc0, acc1;
  for (int j = 0; j < W; ++j) acc0[j] = lowest, acc1[j] = lowest;
  int64_t i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    V a0, b0, a1, b1;
    std::memcpy(&a0, a + i, sizeof(V));
    std::memcpy(&b0, b + i, sizeof(V));
    std::memcpy(&a1, a + i + W, sizeof(V));
    std::memcpy(&b1, b + i + W, sizeof(V));
    const V v0 = a0 * b0, v1 = a1 * b1;
    acc0 = v0 > acc0 ? v0 : acc0;
    acc1 = v1 > acc1 ? v1 : acc1;
  }
  T best = lowest;
  for (int j = 0; j < W; ++j) {
    best = acc0[j] > best ? acc0[j] : best;
    best = acc1[j] > best ? acc1[j] : best;
  }
  for (; i < n; ++i) {
    const T v = a[i] * b[i];
    best = v > best ? v : best;
  }
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
