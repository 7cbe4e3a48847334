// Fused pseudo-label contrastive loss, CPU. The logits products run through ATen's BLAS in
// tiles (pseudo_label_loss_driver.h); this file holds the row kernel that fuses the masked
// softmaxes, the loss and the gradient coefficients between them. Rows are independent and
// each thread owns its rows, so the result does not depend on the thread count.
// Branch-free selects on floats are only if-converted (and so vectorised) without trapping math.
#pragma GCC optimize("no-trapping-math")
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <tuple>

#include "../common/cpu_clones.h"
#include "pseudo_label_loss_checks.h"
#include "pseudo_label_loss_driver.h"

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
  at::parallel_for(0, tile.rows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      T* srow = s + r * s_cols;
      const T* trow = t + r * t_cols;
      const uint8_t* ms = s_member + (r / num_q) * s_member_stride;
      const uint8_t* mt = t_member + (r / num_q) * t_cols;
      const int64_t* t_column = t_columns + (r / num_q) * t_cols;
      const T tmax = valid_row[r] ? masked_max(t_cols, trow, mt) : -std::numeric_limits<T>::infinity();
      if (!(tmax > -std::numeric_limits<T>::infinity())) {  // invalid phrase or no pseudo-label
        loss[r] = 0;
        if (write_grad) std::fill(srow, srow + s_cols, T(0));
        continue;
      }
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
        masked_softmax_write(s_cols, srow, ms, inv_tau, lse_s, c);
        for (int64_t j = 0; j < t_cols; ++j)
          if (mt[j]) srow[t_column[j]] -= c * exp_np(trow[j] * inv_ttau - lse_t);
      }
    }
  });
}

constexpr int64_t kCpuTileElements = int64_t(1) << 20;  // 4 MB float logits tile (at least kMinTileRows rows)

struct Prepared {
  at::Tensor p, r, tp, tr, pv, rv;
  std::optional<at::Tensor> fn;
};

Prepared prepare(const at::Tensor& phrase, const at::Tensor& region, const at::Tensor& teacher_phrase,
                 const at::Tensor& teacher_region, const at::Tensor& phrase_valid, const at::Tensor& region_valid,
                 const std::optional<at::Tensor>& fn_mask) {
  // half/bfloat16 run in float; float/double as they are
  const auto ct = phrase.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Prepared out;
  out.p = phrase.to(ct).contiguous();
  out.r = region.to(ct).contiguous();
  out.tp = teacher_phrase.to(ct).contiguous();
  out.tr = teacher_region.to(ct).contiguous();
  out.pv = phrase_valid.contiguous();
  out.rv = region_valid.contiguous();
  if (fn_mask.has_value()) out.fn = fn_mask->contiguous();
  return out;
}

void dispatch_row_kernel(const PseudoLabelTile& tile) {
  if (tile.s.scalar_type() == at::kDouble)
    row_kernel_cpu<double>(tile);
  else
    row_kernel_cpu<float>(tile);
}

at::Tensor reduce_loss(const at::Tensor& loss_rows, const at::Tensor& phrase_valid, int reduction, int64_t b,
                       int64_t q) {
  if (reduction == kReduceNone) return loss_rows.view({b, q});
  const at::Tensor total = loss_rows.sum();
  if (reduction == kReduceSum) return total;
  return total.div(phrase_valid.sum().clamp_min(1));
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> pseudo_label_loss_forward_cpu(
    const at::Tensor& phrase, const at::Tensor& region, const at::Tensor& teacher_phrase,
    const at::Tensor& teacher_region, const at::Tensor& phrase_valid, const at::Tensor& region_valid,
    const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau, c10::string_view mode_name,
    c10::string_view reduction_name, bool want_grad_phrase, bool want_grad_region) {
  const int mode = parse_loss_mode(std::string_view(mode_name.data(), mode_name.size()));
  const int reduction = parse_loss_reduction(std::string_view(reduction_name.data(), reduction_name.size()));
  check_pseudo_label_loss_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                               tau, teacher_tau, mode);
  const Prepared in = prepare(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask);
  const int64_t b = phrase.size(0), q = phrase.size(1);
  const bool want_gp = want_grad_phrase && reduction != kReduceNone;
  const bool want_gr = want_grad_region && reduction != kReduceNone;
  at::Tensor coef;
  if (want_gp || want_gr) {
    coef = at::ones({b * q}, in.p.options());
    if (reduction == kReduceMean) coef = coef.div(phrase_valid.sum().clamp_min(1));
  }
  PseudoLabelResult res = pseudo_label_loss_tiles(in.p, in.r, in.tp, in.tr, in.pv, in.rv, in.fn, tau, teacher_tau,
                                                  mode, coef, want_gp, want_gr, kCpuTileElements,
                                                  dispatch_row_kernel);
  const auto dtype = phrase.scalar_type();
  at::Tensor loss = reduce_loss(res.loss_rows, phrase_valid, reduction, b, q).to(dtype);
  at::Tensor gp = want_gp ? res.grad_phrase.to(dtype) : at::empty({0}, phrase.options());
  at::Tensor gr = want_gr ? res.grad_region.to(dtype) : at::empty({0}, phrase.options());
  return {loss, gp, gr};
}

std::tuple<at::Tensor, at::Tensor> pseudo_label_loss_backward_cpu(
    const at::Tensor& grad_loss, const at::Tensor& phrase, const at::Tensor& region,
    const at::Tensor& teacher_phrase, const at::Tensor& teacher_region, const at::Tensor& phrase_valid,
    const at::Tensor& region_valid, const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau,
    c10::string_view mode_name, c10::string_view reduction_name) {
  const int mode = parse_loss_mode(std::string_view(mode_name.data(), mode_name.size()));
  const int reduction = parse_loss_reduction(std::string_view(reduction_name.data(), reduction_name.size()));
  check_pseudo_label_loss_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                               tau, teacher_tau, mode);
  const int64_t b = phrase.size(0), q = phrase.size(1);
  if (reduction == kReduceNone) {
    TORCH_CHECK(grad_loss.dim() == 2 && grad_loss.size(0) == b && grad_loss.size(1) == q,
                "grad_loss must have shape [B, Q] for reduction 'none', got ", grad_loss.sizes());
  } else {
    TORCH_CHECK(grad_loss.numel() == 1, "grad_loss must be a scalar for reduction 'mean'/'sum', got ",
                grad_loss.sizes());
  }
  const Prepared in = prepare(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask);
  at::Tensor coef = grad_loss.to(in.p.scalar_type()).reshape({-1}).expand({b * q}).contiguous();
  if (reduction == kReduceMean) coef = coef.div(phrase_valid.sum().clamp_min(1));
  PseudoLabelResult res = pseudo_label_loss_tiles(in.p, in.r, in.tp, in.tr, in.pv, in.rv, in.fn, tau, teacher_tau,
                                                  mode, coef, true, true, kCpuTileElements, dispatch_row_kernel);
  const auto dtype = phrase.scalar_type();
  return {res.grad_phrase.to(dtype), res.grad_region.to(dtype)};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("pseudo_label_contrastive_loss", &pseudo_label_loss_forward_cpu);
  m.impl("pseudo_label_contrastive_loss_backward", &pseudo_label_loss_backward_cpu);
}

}  // namespace dapo_fast
