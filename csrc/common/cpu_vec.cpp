#include "cpu_vec.h"

#include <cstring>
#include <limits>

#include "cpu_clones.h"

namespace dapo_fast {
namespace cpu_vec {
namespace {

constexpr int kLanes = 8;

// GCC/Clang vector extensions: the compiler does not vectorise a float max reduction written
// with ?: on scalars (it would have to assume no NaN), so spell the vector out. The maximum (or
// NaN) is exact whatever the order, so the lane split cannot change the result.
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
    // a NaN product replaces the accumulator and then stays (nothing compares greater than it)
    acc0 = (v0 > acc0) | (v0 != v0) ? v0 : acc0;
    acc1 = (v1 > acc1) | (v1 != v1) ? v1 : acc1;
  }
  T best = lowest;
  for (int j = 0; j < W; ++j) {
    best = acc0[j] > best || acc0[j] != acc0[j] ? acc0[j] : best;
    best = acc1[j] > best || acc1[j] != acc1[j] ? acc1[j] : best;
  }
  for (; i < n; ++i) {
    const T v = a[i] * b[i];
    best = v > best || v != v ? v : best;
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

constexpr int kSumSqLanes = 16;

template <typename T>
__attribute__((always_inline)) inline double sum_sq_impl(const T* __restrict x, const T* __restrict y, int64_t n) {
  T lanes[kSumSqLanes] = {};
  int64_t p = 0;
  if (y != nullptr) {
    for (; p + kSumSqLanes <= n; p += kSumSqLanes)
      for (int j = 0; j < kSumSqLanes; ++j) {
        const T diff = x[p + j] - y[p + j];
        lanes[j] += diff * diff;
      }
  } else {
    for (; p + kSumSqLanes <= n; p += kSumSqLanes)
      for (int j = 0; j < kSumSqLanes; ++j) lanes[j] += x[p + j] * x[p + j];
  }
  double sum = 0;
  for (int j = 0; j < kSumSqLanes; ++j) sum += static_cast<double>(lanes[j]);
  for (; p < n; ++p) {
    const double diff = static_cast<double>(x[p]) - (y != nullptr ? static_cast<double>(y[p]) : 0.0);
    sum += diff * diff;
  }
  return sum;
}

}  // namespace

DAPO_CPU_CLONES void axpy(int64_t n, float a, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

DAPO_CPU_CLONES void axpy(int64_t n, double a, const double* __restrict x, double* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

DAPO_CPU_CLONES float max_product(const float* a, const float* b, int64_t n) { return max_product_impl(a, b, n); }
DAPO_CPU_CLONES double max_product(const double* a, const double* b, int64_t n) { return max_product_impl(a, b, n); }
DAPO_CPU_CLONES float dot(const float* a, const float* b, int64_t n) { return dot_impl(a, b, n); }
DAPO_CPU_CLONES double dot(const double* a, const double* b, int64_t n) { return dot_impl(a, b, n); }
DAPO_CPU_CLONES float sum(const float* a, int64_t n) { return sum_impl(a, n); }
DAPO_CPU_CLONES double sum(const double* a, int64_t n) { return sum_impl(a, n); }
DAPO_CPU_CLONES double sum_sq(const float* x, const float* y, int64_t n) { return sum_sq_impl(x, y, n); }
DAPO_CPU_CLONES double sum_sq(const double* x, const double* y, int64_t n) { return sum_sq_impl(x, y, n); }

}  // namespace cpu_vec
}  // namespace dapo_fast
