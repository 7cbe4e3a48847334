// Fused pseudo-label contrastive loss, CPU. The logits products run through ATen's BLAS in
// tiles (pseudo_label_contrastive_loss_driver.h); this file holds the row kernel that fuses the masked
// softmaxes, the loss and the gradient coefficients between them. Rows are independent and
// each thread owns its rows, so the result does not depend on the thread count.
// Branch-free selects on floats are only if-converted (and so vectorised) without trapping math.
#pragma GCC optimize("no-trapping-math")
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "../common/cpu_clones.h"
#include "../common/parallel.h"
#include "pseudo_label_contrastive_loss_prepare.h"

namespace dapo_fast {
namespace {

using namespace pseudo_label_math;

inline float exp_np(float x) { return exp_nonpositive(x); }
inline double exp_np(double x) { return x < -745.0 ? 0.0 : std::exp(x > 0.0 ? 0.0 : x); }

// The row loops below are plain loops with `omp simd` reductions and branch-free selects; with
// trapping math off (pragma at the top of the file) GCC vectorises all three, exp included.
template <typename T>
inline T masked_max_impl(int64_t n, const T* x, const uint8_t* m) {
  const T lowest = -std::numeric_limits<T>::infinity();
  T r = lowest;
#pragma omp simd reduction(max : r)
  for (int64_t j = 0; j < n; ++j) {
    const T xv = x[j];
    const T v = m[j] ? xv : lowest;
    r = r > v ? r : v;
  }
  return r;
}

// sum over member columns of exp(scale * x - shift)
template <typename T>
inline T masked_sum_exp_impl(int64_t n, const T* x, const uint8_t* m, T scale, T shift) {
  T r = 0;
#pragma omp simd reduction(+ : r)
  for (int64_t j = 0; j < n; ++j) {
    const T e = exp_np(x[j] * scale - shift);
    r += m[j] ? e : T(0);
  }
  return r;
}

// x <- member ? coef * exp(scale * x - shift) : 0
template <typename T>
inline void masked_softmax_write_impl(int64_t n, T* x, const uint8_t* m, T scale, T shift, T coef) {
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) {
    const T e = coef * exp_np(x[j] * scale - shift);
    x[j] = m[j] ? e : T(0);
  }
}

DAPO_CPU_CLONES float masked_max(int64_t n, const float* x, const uint8_t* m) { return masked_max_impl(n, x, m); }
double masked_max(int64_t n, const double* x, const uint8_t* m) { return masked_max_impl(n, x, m); }
DAPO_CPU_CLONES float masked_sum_exp(int64_t n, const float* x, const uint8_t* m, float scale, float shift) {
  return masked_sum_exp_impl(n, x, m, scale, shift);
}
double masked_sum_exp(int64_t n, const double* x, const uint8_t* m, double scale, double shift) {
  return masked_sum_exp_impl(n, x, m, scale, shift);
}
DAPO_CPU_CLONES void masked_softmax_write(int64_t n, float* x, const uint8_t* m, float scale, float shift,
                                          float coef) {
  masked_softmax_write_impl(n, x, m, scale, shift, coef);
}
void masked_softmax_write(int64_t n, double* x, const uint8_t* m, double scale, double shift, double coef) {
  masked_softmax_write_impl(n, x, m, scale, shift, coef);
}

template <typename T>
void row_kernel_cpu(const PseudoLabelTile& tile) {
  T* s = tile.s.data_ptr<T>();
  const T* t = tile.t.data_ptr<T>();
  const uint8_t* s_member = tile.s_member.data_ptr<uint8_t>();
  const uint8_t* t_member = tile.t_member.data_ptr<uint8_t>();
  const int64_t* t_columns = tile.t_column.data_ptr<int64_t>();
  const int64_t s_member_stride = tile.s_member_stride;
  const uint8_t* valid_row = tile.valid_row.data_ptr<uint8_t>();
  const T* coef = tile.write_grad ? tile.coef.data_ptr<T>() : nullptr;
  T* loss = tile.loss.data_ptr<T>();
  const int64_t s_cols = tile.s_cols, t_cols = tile.t_cols, num_q = tile.num_q;
  const T inv_tau = static_cast<T>(tile.inv_tau), inv_ttau = static_cast<T>(tile.inv_teacher_tau);
  const bool write_grad = tile.write_grad;
  // s_cols is B*K: a few rows per task already amortise the scheduling
  dapo_fast::parallel_for(0, tile.rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* srow = s + r * s_cols;
      const T* trow = t + r * t_cols;
      const uint8_t* ms = s_member + (r / num_q) * s_member_stride;
      const uint8_t* mt = t_member + (r / num_q) * t_cols;
      const int64_t* t_column = t_columns + (r / num_q) * t_cols;
      // a row has a loss when its phrase is valid and its teacher set is not empty: counted, not
      // read off the logits, so NaN or -inf teacher logits give a NaN loss (as the softmax), not 0
      if (!valid_row[r] || !any_member(t_cols, mt)) {
        loss[r] = 0;
        if (write_grad) std::fill(srow, srow + s_cols, T(0));
        continue;
      }
      const T tmax = masked_max(t_cols, trow, mt);
      const T tshift = tmax * inv_ttau;
      const T lse_t = tshift + std::log(masked_sum_exp(t_cols, trow, mt, inv_ttau, tshift));
      const T sshift = masked_max(s_cols, srow, ms) * inv_tau;
      const T lse_s = sshift + std::log(masked_sum_exp(s_cols, srow, ms, inv_tau, sshift));
      T dot = 0;  // sum_T pi * s
      for (int64_t j = 0; j < t_cols; ++j)
        if (mt[j]) dot += exp_np(trow[j] * inv_ttau - lse_t) * srow[t_column[j]] * inv_tau;
      loss[r] = lse_s - dot;
      if (write_grad) {
        const T c = coef[r] * inv_tau;
        // d loss / d s = (softmax_S * sum_T pi - pi) / tau: sum_T pi is 1, or NaN with lse_t
        masked_softmax_write(s_cols, srow, ms, inv_tau, lse_s, c * (lse_t - lse_t + T(1)));
        for (int64_t j = 0; j < t_cols; ++j)
          if (mt[j]) srow[t_column[j]] -= c * exp_np(trow[j] * inv_ttau - lse_t);
      }
    }
  });
}

constexpr int64_t kCpuTileElements = int64_t(1) << 20;  // 4 MB float logits tile (at least kMinTileRows rows)

void dispatch_row_kernel(const PseudoLabelTile& tile) {
  if (tile.s.scalar_type() == at::kDouble)
    row_kernel_cpu<double>(tile);
  else
    row_kernel_cpu<float>(tile);
}

struct CpuKernels {
  static PseudoLabelResult tiles(const PseudoLabelLoss& p) { return p.tiles(kCpuTileElements, dispatch_row_kernel); }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_pseudo_label_contrastive_loss<CpuKernels>(m); }

}  // namespace dapo_fast
