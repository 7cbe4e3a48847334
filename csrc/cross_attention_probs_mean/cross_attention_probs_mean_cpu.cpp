// cross_attention_probs_mean CPU kernels.
//
// Forward: parallel over (batch, tile of 32 query rows); each task owns its output rows, loops
// over the heads in order and keeps the tile's [32, T] running head-sum in a local buffer, so
// nothing of size [B, heads, HW, T] is ever allocated and the result does not depend on the
// thread count. Scores come from a 8-row x 16-key register block over a per-head transposed,
// zero-padded copy of k ([d, T16], tiny); the row softmax (T = 77 keys fits a row) uses a
// vectorisable exp polynomial.
// Backward: parallel over (batch, head): each task owns dq[b, h] and dk[b, h]; it recomputes
// the probabilities of a row, forms ds = p * (g - <p, g>) and adds ds k into dq and ds^T q into
// dk in row order (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>
#include <vector>

#include "../common/cpu_clones.h"
#include "cross_attention_probs_mean_checks.h"
#include "cross_attention_probs_mean_common.h"

namespace dapo_fast {
namespace {

using probs_mean_math::exp_nonpositive;

constexpr int64_t kRowTile = 32;  // query rows per forward task
constexpr int kRows = 8;          // rows per register block (8 accumulators hide the FMA latency)
constexpr int kCols = 16;         // keys per register block

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

typedef float float_x16 __attribute__((vector_size(64)));
typedef double double_x8 __attribute__((vector_size(64)));
template <typename T> struct Vec64;
template <> struct Vec64<float> { using type = float_x16; };
template <> struct Vec64<double> { using type = double_x8; };

// S[r][0:T16] = scale * q_r . kT[:, 0:T16] for kRows rows (rows past `rows` repeat row 0).
template <typename T>
__attribute__((always_inline, optimize("fp-contract=fast"))) inline void scores_block_impl(const T* const* q_rows,
                                                                                          const T* kT, int64_t d,
                                                                                          int64_t t16, T scale, T* S) {
  // GCC vector extension: one 64-byte register per AVX-512 op (two or four in the narrower
  // clones), so the 8 x 16 accumulators stay in registers whatever the clone.
  using V = typename Vec64<T>::type;
  constexpr int L = 64 / sizeof(T);
  constexpr int NV = kCols / L;
  for (int64_t tb = 0; tb < t16; tb += kCols) {
    V acc[kRows][NV];
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V{};
    for (int64_t c = 0; c < d; ++c) {
      V kv[NV];
      std::memcpy(kv, kT + c * t16 + tb, sizeof(kv));
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const T a = q_rows[r][c];
        for (int v = 0; v < NV; ++v) acc[r][v] += a * kv[v];
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < NV; ++v) {
        const V out = acc[r][v] * scale;
        std::memcpy(S + r * t16 + tb + v * L, &out, sizeof(out));
      }
  }
}

// Scores may use FMA: there is no scalar remainder here (keys are padded to kCols), so every
// score is rounded the same way whatever the tiling.
#define DAPO_FMA_OK __attribute__((optimize("fp-contract=fast")))

DAPO_FMA_OK DAPO_CPU_CLONES void scores_block(const float* const* q_rows, const float* kT, int64_t d, int64_t t16, float scale,
                                  float* S) {
  scores_block_impl(q_rows, kT, d, t16, scale, S);
}
DAPO_FMA_OK DAPO_CPU_CLONES void scores_block(const double* const* q_rows, const double* kT, int64_t d, int64_t t16,
                                  double scale, double* S) {
  scores_block_impl(q_rows, kT, d, t16, scale, S);
}

// s[0:T] += bias; p = softmax(s) written back into s; returns nothing. Max and sum use 16
// partial lanes so the loops vectorise without reassociation flags.
template <typename T>
__attribute__((always_inline)) inline void softmax_row_impl(T* s, const T* bias, int64_t n) {
  if (bias != nullptr)
    for (int64_t t = 0; t < n; ++t) s[t] += bias[t];
  T lanes[kCols];
  for (int j = 0; j < kCols; ++j) lanes[j] = -std::numeric_limits<T>::infinity();
  int64_t t = 0;
  for (; t + kCols <= n; t += kCols)
    for (int j = 0; j < kCols; ++j) lanes[j] = lanes[j] > s[t + j] ? lanes[j] : s[t + j];
  T m = -std::numeric_limits<T>::infinity();
  for (int j = 0; j < kCols; ++j) m = lanes[j] > m ? lanes[j] : m;
  for (; t < n; ++t) m = s[t] > m ? s[t] : m;
  for (int64_t i = 0; i < n; ++i) s[i] = exp_nonpositive(s[i] - m);
  for (int j = 0; j < kCols; ++j) lanes[j] = 0;
  for (t = 0; t + kCols <= n; t += kCols)
    for (int j = 0; j < kCols; ++j) lanes[j] += s[t + j];
  T sum = 0;
  for (int j = 0; j < kCols; ++j) sum += lanes[j];
  for (; t < n; ++t) sum += s[t];
  const T inv = T(1) / sum;
  for (int64_t i = 0; i < n; ++i) s[i] *= inv;
}

DAPO_CPU_CLONES void softmax_row(float* s, const float* bias, int64_t n) { softmax_row_impl(s, bias, n); }
DAPO_CPU_CLONES void softmax_row(double* s, const double* bias, int64_t n) { softmax_row_impl(s, bias, n); }

struct Sizes {
  int64_t batch, heads, rows, keys, dim;
};

// kT[b, h] = transpose(k[b, h]) padded with zero columns to a multiple of kCols: [B*H, d, T16].
template <typename T>
std::vector<T> transposed_keys(const T* k, const int64_t* ks, const Sizes& s, int64_t t16) {
  std::vector<T> kT(static_cast<size_t>(s.batch * s.heads * s.dim * t16), T(0));
  at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const T* src = k + (bh / s.heads) * ks[0] + (bh % s.heads) * ks[1];
      T* dst = kT.data() + bh * s.dim * t16;
      for (int64_t t = 0; t < s.keys; ++t)
        for (int64_t c = 0; c < s.dim; ++c) dst[c * t16 + t] = src[t * ks[2] + c];
    }
  });
  return kT;
}

// Probabilities of rows [i0, i0 + n) (n <= kRows) of head (b, h) into P[n][t16] (first T valid).
template <typename T>
inline void row_block_probs(const T* q, const int64_t* qs, const T* kT, const T* bias_b, const Sizes& s, int64_t t16,
                            T scale, int64_t b, int64_t h, int64_t i0, int64_t n, T* P) {
  const T* base = q + b * qs[0] + h * qs[1];
  const T* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = base + (i0 + (r < n ? r : 0)) * qs[2];
  scores_block(rows, kT + (b * s.heads + h) * s.dim * t16, s.dim, t16, scale, P);
  for (int64_t r = 0; r < n; ++r) softmax_row(P + r * t16, bias_b, s.keys);
}

// out[b, i, :] (= or +=) weight/heads * sum_h P[b, h, i, :]
template <typename T>
void forward_kernel(const T* q, const int64_t* qs, const T* k, const int64_t* ks, const T* bias, T* out,
                    const int64_t* os, const Sizes& s, T scale, T weight, bool accumulate) {
  const int64_t t16 = round_up(s.keys, kCols);
  const std::vector<T> kT = transposed_keys(k, ks, s, t16);
  const int64_t tiles = (s.rows + kRowTile - 1) / kRowTile;
  const T w = weight / static_cast<T>(s.heads);
  at::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(static_cast<size_t>(kRowTile * t16));
    std::vector<T> P(static_cast<size_t>(kRows * t16));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles;
      const int64_t r0 = (task % tiles) * kRowTile;
      const int64_t nr = std::min(kRowTile, s.rows - r0);
      const T* bias_b = bias != nullptr ? bias + b * s.keys : nullptr;
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t h = 0; h < s.heads; ++h) {
        for (int64_t i = 0; i < nr; i += kRows) {
          const int64_t n = std::min<int64_t>(kRows, nr - i);
          row_block_probs(q, qs, kT.data(), bias_b, s, t16, scale, b, h, r0 + i, n, P.data());
          for (int64_t r = 0; r < n; ++r) {
            T* a = acc.data() + (i + r) * t16;
            const T* p = P.data() + r * t16;
            for (int64_t t = 0; t < s.keys; ++t) a[t] += p[t];
          }
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        T* o = out + b * os[0] + (r0 + r) * os[1];
        const T* a = acc.data() + r * t16;
        if (accumulate) {
          for (int64_t t = 0; t < s.keys; ++t) o[t * os[2]] += w * a[t];
        } else {
          for (int64_t t = 0; t < s.keys; ++t) o[t * os[2]] = w * a[t];
        }
      }
    }
  });
}

// dq, dk: contiguous [B, H, HW, d] / [B, H, T, d], written completely.
template <typename T>
void backward_kernel(const T* grad, const int64_t* gs, const T* q, const int64_t* qs, const T* k, const int64_t* ks,
                     const T* bias, T* dq, T* dk, const Sizes& s, T scale, T weight) {
  const int64_t t16 = round_up(s.keys, kCols);
  const std::vector<T> kT = transposed_keys(k, ks, s, t16);
  const T w = weight / static_cast<T>(s.heads);
  at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> P(static_cast<size_t>(kRows * t16));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.heads, h = bh % s.heads;
      const T* bias_b = bias != nullptr ? bias + b * s.keys : nullptr;
      const T* kbh = k + b * ks[0] + h * ks[1];
      const T* qbh = q + b * qs[0] + h * qs[1];
      T* dq_bh = dq + bh * s.rows * s.dim;
      T* dk_bh = dk + bh * s.keys * s.dim;
      std::fill(dk_bh, dk_bh + s.keys * s.dim, T(0));
      for (int64_t i0 = 0; i0 < s.rows; i0 += kRows) {
        const int64_t n = std::min<int64_t>(kRows, s.rows - i0);
        row_block_probs(q, qs, kT.data(), bias_b, s, t16, scale, b, h, i0, n, P.data());
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          T* p = P.data() + r * t16;
          const T* g = grad + b * gs[0] + i * gs[1];
          T dot = 0;
          for (int64_t t = 0; t < s.keys; ++t) dot += p[t] * g[t * gs[2]];
          for (int64_t t = 0; t < s.keys; ++t) p[t] = p[t] * (w * g[t * gs[2]] - w * dot) * scale;  // ds
          T* dqi = dq_bh + i * s.dim;
          const T* qi = qbh + i * qs[2];
          std::fill(dqi, dqi + s.dim, T(0));
          for (int64_t t = 0; t < s.keys; ++t) {
            const T ds = p[t];
            const T* kt = kbh + t * ks[2];
            T* dkt = dk_bh + t * s.dim;
            for (int64_t c = 0; c < s.dim; ++c) dqi[c] += ds * kt[c];
            for (int64_t c = 0; c < s.dim; ++c) dkt[c] += ds * qi[c];
          }
        }
      }
    }
  });
}

// The kernels read float/double with unit stride along d; half/bfloat16 run in float.
at::Tensor compute_operand(const at::Tensor& t) {
  at::Tensor c = (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) ? t.to(at::kFloat) : t;
  return c.stride(-1) == 1 ? c : c.contiguous();
}

std::optional<at::Tensor> compute_bias(const std::optional<at::Tensor>& key_bias, at::ScalarType type) {
  if (!key_bias.has_value() || !key_bias->defined()) return std::nullopt;
  return key_bias->to(type).contiguous();
}

void run_forward(const at::Tensor& q_in, const at::Tensor& k_in, double scale,
                 const std::optional<at::Tensor>& key_bias, double weight, at::Tensor& out, bool accumulate) {
  const at::Tensor q = compute_operand(q_in), k = compute_operand(k_in);
  const auto bias = compute_bias(key_bias, q.scalar_type());
  const Sizes s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "cross_attention_probs_mean_cpu", [&] {
    const int64_t qs[3] = {q.stride(0), q.stride(1), q.stride(2)};
    const int64_t ks[3] = {k.stride(0), k.stride(1), k.stride(2)};
    const int64_t os[3] = {out.stride(0), out.stride(1), out.stride(2)};
    forward_kernel<scalar_t>(q.data_ptr<scalar_t>(), qs, k.data_ptr<scalar_t>(), ks,
                             bias ? bias->data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), os, s,
                             static_cast<scalar_t>(scale), static_cast<scalar_t>(weight), accumulate);
  });
}

bool reduced(const at::Tensor& t) { return t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16; }

at::Tensor probs_mean_cpu(const at::Tensor& q, const at::Tensor& k, double scale,
                          const std::optional<at::Tensor>& key_bias, double weight) {
  check_probs_mean_args(q, k, key_bias);
  at::Tensor out = at::empty({q.size(0), q.size(2), k.size(2)}, q.options().dtype(reduced(q) ? at::kFloat : q.scalar_type()));
  if (out.numel() == 0) return out.to(q.scalar_type());
  if (q.size(1) == 0) {  // no head: the mean is undefined (NaN, like torch.mean of nothing)
    out.fill_(std::numeric_limits<double>::quiet_NaN());
    return out.to(q.scalar_type());
  }
  run_forward(q, k, scale, key_bias, weight, out, false);
  return reduced(q) ? out.to(q.scalar_type()) : out;
}

void probs_mean_accumulate_cpu(at::Tensor& out, const at::Tensor& q, const at::Tensor& k, double scale,
                               const std::optional<at::Tensor>& key_bias, double weight) {
  check_probs_mean_args(q, k, key_bias);
  check_probs_mean_out(out, q, k, "out");
  if (out.numel() == 0) return;
  if (reduced(q) || q.size(1) == 0) {
    out.add_(probs_mean_cpu(q, k, scale, key_bias, weight));
    return;
  }
  run_forward(q, k, scale, key_bias, weight, out, true);
}

std::tuple<at::Tensor, at::Tensor> probs_mean_backward_cpu(const at::Tensor& grad_in, const at::Tensor& q_in,
                                                            const at::Tensor& k_in, double scale,
                                                            const std::optional<at::Tensor>& key_bias,
                                                            double weight) {
  check_probs_mean_args(q_in, k_in, key_bias);
  check_dim(grad_in, 3, "grad");
  TORCH_CHECK(grad_in.size(0) == q_in.size(0) && grad_in.size(1) == q_in.size(2) && grad_in.size(2) == k_in.size(2),
              "grad must have shape [B, HW, T], got ", grad_in.sizes());
  const at::Tensor q = compute_operand(q_in), k = compute_operand(k_in);
  const at::Tensor grad = grad_in.to(q.scalar_type());
  const auto bias = compute_bias(key_bias, q.scalar_type());
  at::Tensor dq = at::empty(q.sizes(), q.options());
  at::Tensor dk = at::empty(k.sizes(), k.options());
  const Sizes s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  if (s.keys == 0 || s.rows == 0 || s.dim == 0 || s.batch == 0 || s.heads == 0) {
    dq.zero_();
    dk.zero_();
  } else {
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "cross_attention_probs_mean_backward_cpu", [&] {
      const int64_t gs[3] = {grad.stride(0), grad.stride(1), grad.stride(2)};
      const int64_t qs[3] = {q.stride(0), q.stride(1), q.stride(2)};
      const int64_t ks[3] = {k.stride(0), k.stride(1), k.stride(2)};
      backward_kernel<scalar_t>(grad.data_ptr<scalar_t>(), gs, q.data_ptr<scalar_t>(), qs, k.data_ptr<scalar_t>(), ks,
                                bias ? bias->data_ptr<scalar_t>() : nullptr, dq.data_ptr<scalar_t>(),
                                dk.data_ptr<scalar_t>(), s, static_cast<scalar_t>(scale),
                                static_cast<scalar_t>(weight));
    });
  }
  return {dq.to(q_in.scalar_type()), dk.to(k_in.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("cross_attention_probs_mean", &probs_mean_cpu);
  m.impl("cross_attention_probs_mean_accumulate", &probs_mean_accumulate_cpu);
  m.impl("cross_attention_probs_mean_backward", &probs_mean_backward_cpu);
}

}  // namespace dapo_fast
