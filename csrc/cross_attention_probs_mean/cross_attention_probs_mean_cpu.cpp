// cross_attention_probs_mean CPU kernels.
//
// Forward: parallel over (batch, tile of 32 query rows); each task owns its output rows, loops
// over the heads in order and keeps the tile's [32, T] running head-sum in a local buffer, so
// nothing of size [B, heads, HW, T] is ever allocated and the result does not depend on the
// thread count. Scores come from an 8-row x 16-key register block over a per-head transposed,
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
#include "../common/parallel.h"

// 64-byte GCC vectors are passed between always-inline helpers only; the ABI note is moot.
#pragma GCC diagnostic ignored "-Wpsabi"
#include "cross_attention_probs_mean_prepare.h"
#include "cross_attention_probs_mean_common.h"

namespace dapo_fast {
namespace {


constexpr int64_t kRowTile = 32;  // query rows per forward task
constexpr int kRows = 8;          // rows per register block (8 accumulators hide the FMA latency)
constexpr int kCols = 16;         // keys per register block

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

typedef float float_x16 __attribute__((vector_size(64)));
typedef double double_x8 __attribute__((vector_size(64)));
template <typename T> struct Vec64;
template <> struct Vec64<float> { using type = float_x16; };
template <> struct Vec64<double> { using type = double_x8; };

// C[r][0:n16] = scale * sum_k A[r][k] B[k][0:n16] for kRows rows of A given as pointers (rows
// past the real ones repeat a real row; the caller ignores them). B has row stride ldb, C ldc;
// n16 is a multiple of kCols. Scores are q . k^T (B = transposed k), the backward's dq = ds k
// and dk = ds^T q are the same product.
template <typename T>
__attribute__((always_inline, optimize("fp-contract=fast"))) inline void gemm_rows_impl(
    const T* const* a_rows, const T* B, int64_t K, int64_t ldb, int64_t n16, T scale, T* C, int64_t ldc) {
  // GCC vector extension: one 64-byte register per AVX-512 op (two or four in the narrower
  // clones), so the 8 x 16 accumulators stay in registers whatever the clone.
  using V = typename Vec64<T>::type;
  constexpr int L = 64 / sizeof(T);
  constexpr int NV = kCols / L;
  for (int64_t tb = 0; tb < n16; tb += kCols) {
    V acc[kRows][NV];
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < NV; ++v) acc[r][v] = V{};
    for (int64_t c = 0; c < K; ++c) {
      V kv[NV];
      std::memcpy(kv, B + c * ldb + tb, sizeof(kv));
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        const T a = a_rows[r][c];
        for (int v = 0; v < NV; ++v) acc[r][v] += a * kv[v];
      }
    }
    for (int r = 0; r < kRows; ++r)
      for (int v = 0; v < NV; ++v) {
        const V out = acc[r][v] * scale;
        std::memcpy(C + r * ldc + tb + v * L, &out, sizeof(out));
      }
  }
}

// The products may use FMA: there is no scalar remainder (columns are padded to kCols), so
// every value is rounded the same way whatever the tiling or thread count.
#define DAPO_FMA_OK __attribute__((optimize("fp-contract=fast")))

DAPO_FMA_OK DAPO_CPU_CLONES void gemm_rows(const float* const* a_rows, const float* B, int64_t K, int64_t ldb,
                                           int64_t n16, float scale, float* C, int64_t ldc) {
  gemm_rows_impl(a_rows, B, K, ldb, n16, scale, C, ldc);
}
DAPO_FMA_OK DAPO_CPU_CLONES void gemm_rows(const double* const* a_rows, const double* B, int64_t K, int64_t ldb,
                                           int64_t n16, double scale, double* C, int64_t ldc) {
  gemm_rows_impl(a_rows, B, K, ldb, n16, scale, C, ldc);
}

// C[0:m][0:n16] = scale * A[0:m][0:K] B (A rows with stride lda), in blocks of kRows rows;
// tmp holds kRows * n16 values.
template <typename T>
void gemm(const T* A, int64_t lda, int64_t m, const T* B, int64_t K, int64_t ldb, int64_t n16, T scale, T* C,
          int64_t ldc, T* tmp) {
  for (int64_t i0 = 0; i0 < m; i0 += kRows) {
    const int64_t n = std::min<int64_t>(kRows, m - i0);
    const T* rows[kRows];
    for (int r = 0; r < kRows; ++r) rows[r] = A + (i0 + (r < n ? r : 0)) * lda;
    gemm_rows(rows, B, K, ldb, n16, scale, tmp, n16);
    for (int64_t r = 0; r < n; ++r) std::memcpy(C + (i0 + r) * ldc, tmp + r * n16, sizeof(T) * n16);
  }
}

typedef int32_t int_x16 __attribute__((vector_size(64)));

__attribute__((always_inline)) inline float_x16 splat(float v) { return float_x16{} + v; }

// exp_nonpositive (cross_attention_probs_mean_common.h) on 16 lanes with GCC vector
// extensions, so every clone gets a vector exp (auto-vectorisation of the scalar form fails on
// the float->int conversion). Rounding to an integer uses the 1.5 * 2^23 trick instead of floor.
__attribute__((always_inline)) inline float_x16 exp_nonpositive_x16(float_x16 x) {
  const float_x16 lowest = splat(-80.0f);
  const auto underflow = x < lowest;
  x = underflow ? lowest : x;
  const float_x16 magic = splat(12582912.0f);
  const float_x16 n = (x * 1.44269504088896341f + magic) - magic;
  const float_x16 r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float_x16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int_x16 bits = (__builtin_convertvector(n, int_x16) + 127) << 23;
  const float_x16 value = p * (float_x16)bits;  // a vector cast between equal sizes reinterprets the bits
  return underflow ? float_x16{} : value;
}

// s[0:n16] += bias16 (the key bias, -inf on the padding keys n..n16); softmax over all n16
// lanes, then either written back into s (acc == nullptr) or added into acc[0:n16] (the
// forward's head sum: one pass less than softmax-then-add). Whole-vector loads and stores only:
// scalar stores followed by overlapping vector loads would stall store forwarding every row.
DAPO_CPU_CLONES void softmax_row(float* s, const float* bias16, int64_t /*n*/, int64_t n16, float* acc = nullptr) {
  float_x16 mx = splat(-std::numeric_limits<float>::infinity());
  for (int64_t t = 0; t < n16; t += kCols) {
    float_x16 v, b;
    std::memcpy(&v, s + t, sizeof(v));
    std::memcpy(&b, bias16 + t, sizeof(b));
    v += b;
    std::memcpy(s + t, &v, sizeof(v));
    mx = v > mx ? v : mx;
  }
  float m = mx[0];
  for (int j = 1; j < kCols; ++j) m = mx[j] > m ? mx[j] : m;
  float_x16 sum = {};
  for (int64_t t = 0; t < n16; t += kCols) {
    float_x16 v;
    std::memcpy(&v, s + t, sizeof(v));
    v = exp_nonpositive_x16(v - m);
    sum += v;
    std::memcpy(s + t, &v, sizeof(v));
  }
  float total = 0;
  for (int j = 0; j < kCols; ++j) total += sum[j];
  const float inv = 1.0f / total;
  if (acc == nullptr) {
    for (int64_t t = 0; t < n16; ++t) s[t] *= inv;
  } else {
    for (int64_t t = 0; t < n16; ++t) acc[t] += s[t] * inv;
  }
}

// double (tests, gradcheck): plain loops with std::exp
void softmax_row(double* s, const double* bias16, int64_t n, int64_t /*n16*/, double* acc = nullptr) {
  for (int64_t t = 0; t < n; ++t) s[t] += bias16[t];
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t t = 0; t < n; ++t) m = s[t] > m ? s[t] : m;
  double sum = 0;
  for (int64_t t = 0; t < n; ++t) {
    s[t] = std::exp(s[t] - m);
    sum += s[t];
  }
  for (int64_t t = 0; t < n; ++t) {
    if (acc == nullptr)
      s[t] /= sum;
    else
      acc[t] += s[t] / sum;
  }
}

struct Sizes {
  int64_t batch, heads, rows, keys, dim;
};

// kT[b, h] = transpose(k[b, h]) padded with zero columns to a multiple of kCols: [B*H, d, T16].
template <typename T>
std::vector<T> transposed_keys(const T* k, const int64_t* ks, const Sizes& s, int64_t t16) {
  std::vector<T> kT(static_cast<size_t>(s.batch * s.heads * s.dim * t16));
  dapo_fast::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const T* src = k + (bh / s.heads) * ks[0] + (bh % s.heads) * ks[1];
      T* dst = kT.data() + bh * s.dim * t16;
      // blocks of kCols keys: each destination row segment is written whole (contiguous), the
      // kCols source rows stay in L1 while their columns are gathered
      for (int64_t tb = 0; tb < t16; tb += kCols) {
        const int64_t nt = std::min<int64_t>(kCols, s.keys - tb);
        const T* rows[kCols];
        for (int j = 0; j < kCols; ++j) rows[j] = src + (tb + (j < nt ? j : 0)) * ks[2];
        for (int64_t c = 0; c < s.dim; ++c) {
          T* out = dst + c * t16 + tb;
          for (int j = 0; j < kCols; ++j) out[j] = j < nt ? rows[j][c] : T(0);
        }
      }
    }
  });
  return kT;
}

// bias16[0:T] = the key bias of sample b (0 without one), bias16[T:T16] = -inf (padding keys).
template <typename T>
void padded_bias(const T* bias, int64_t b, int64_t keys, int64_t t16, T* bias16) {
  for (int64_t t = 0; t < keys; ++t) bias16[t] = bias != nullptr ? bias[b * keys + t] : T(0);
  for (int64_t t = keys; t < t16; ++t) bias16[t] = -std::numeric_limits<T>::infinity();
}

// Probabilities of rows [i0, i0 + n) (n <= kRows) of head (b, h) into P[n][t16] (first T valid).
// With acc (stride t16), the probabilities are added into acc's rows instead of kept in P.
template <typename T>
inline void row_block_probs(const T* q, const int64_t* qs, const T* kT, const T* bias16, const Sizes& s, int64_t t16,
                            T scale, int64_t b, int64_t h, int64_t i0, int64_t n, T* P, T* acc = nullptr) {
  const T* base = q + b * qs[0] + h * qs[1];
  const T* rows[kRows];
  for (int r = 0; r < kRows; ++r) rows[r] = base + (i0 + (r < n ? r : 0)) * qs[2];
  gemm_rows(rows, kT + (b * s.heads + h) * s.dim * t16, s.dim, t16, t16, scale, P, t16);
  for (int64_t r = 0; r < n; ++r) softmax_row(P + r * t16, bias16, s.keys, t16, acc != nullptr ? acc + r * t16 : nullptr);
}

// out[b, i, :] (= or +=) weight/heads * sum_h P[b, h, i, :]
template <typename T>
void forward_kernel(const T* q, const int64_t* qs, const T* k, const int64_t* ks, const T* bias, T* out,
                    const int64_t* os, const Sizes& s, T scale, T weight, bool accumulate) {
  const int64_t t16 = round_up(s.keys, kCols);
  const std::vector<T> kT = transposed_keys(k, ks, s, t16);
  const int64_t tiles = (s.rows + kRowTile - 1) / kRowTile;
  const T w = weight / static_cast<T>(s.heads);
  dapo_fast::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> acc(static_cast<size_t>(kRowTile * t16));
    std::vector<T> P(static_cast<size_t>(kRows * t16));
    std::vector<T> bias16(static_cast<size_t>(t16));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / tiles;
      const int64_t r0 = (task % tiles) * kRowTile;
      const int64_t nr = std::min(kRowTile, s.rows - r0);
      padded_bias(bias, b, s.keys, t16, bias16.data());
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t h = 0; h < s.heads; ++h) {
        for (int64_t i = 0; i < nr; i += kRows) {
          const int64_t n = std::min<int64_t>(kRows, nr - i);
          row_block_probs(q, qs, kT.data(), bias16.data(), s, t16, scale, b, h, r0 + i, n, P.data(),
                          acc.data() + i * t16);
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

// dq, dk: contiguous [B, H, HW, d] / [B, H, T, d], written completely. Per (b, h): the row
// probabilities give ds [HW, T16] (and its transpose); dq = ds k and dk = ds^T q are two
// register-blocked products over zero-padded copies of k and q ([., d16]).
template <typename T>
void backward_kernel(const T* grad, const int64_t* gs, const T* q, const int64_t* qs, const T* k, const int64_t* ks,
                     const T* bias, T* dq, T* dk, const Sizes& s, T scale, T weight) {
  const int64_t t16 = round_up(s.keys, kCols);
  const int64_t d16 = round_up(s.dim, kCols);
  const int64_t hw16 = round_up(s.rows, kCols);
  const std::vector<T> kT = transposed_keys(k, ks, s, t16);
  const T w = weight / static_cast<T>(s.heads);
  dapo_fast::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> P(static_cast<size_t>(kRows * t16));
    std::vector<T> ds(static_cast<size_t>(s.rows * t16));
    std::vector<T> dsT(static_cast<size_t>(t16 * hw16), T(0));
    std::vector<T> kpad(static_cast<size_t>(t16 * d16), T(0));
    std::vector<T> qpad(static_cast<size_t>(hw16 * d16), T(0));
    std::vector<T> out(static_cast<size_t>(std::max(s.rows, t16) * d16));
    std::vector<T> tmp(static_cast<size_t>(kRows * d16));
    std::vector<T> bias16(static_cast<size_t>(t16));
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.heads, h = bh % s.heads;
      padded_bias(bias, b, s.keys, t16, bias16.data());
      const T* kbh = k + b * ks[0] + h * ks[1];
      const T* qbh = q + b * qs[0] + h * qs[1];
      for (int64_t t = 0; t < s.keys; ++t) std::memcpy(kpad.data() + t * d16, kbh + t * ks[2], sizeof(T) * s.dim);
      for (int64_t i = 0; i < s.rows; ++i) std::memcpy(qpad.data() + i * d16, qbh + i * qs[2], sizeof(T) * s.dim);
      for (int64_t i0 = 0; i0 < s.rows; i0 += kRows) {
        const int64_t n = std::min<int64_t>(kRows, s.rows - i0);
        row_block_probs(q, qs, kT.data(), bias16.data(), s, t16, scale, b, h, i0, n, P.data());
        for (int64_t r = 0; r < n; ++r) {
          const int64_t i = i0 + r;
          const T* p = P.data() + r * t16;
          const T* g = grad + b * gs[0] + i * gs[1];
          T dot = 0;
          for (int64_t t = 0; t < s.keys; ++t) dot += p[t] * g[t * gs[2]];
          T* dsi = ds.data() + i * t16;
          for (int64_t t = 0; t < s.keys; ++t) {
            const T v = p[t] * (w * g[t * gs[2]] - w * dot) * scale;
            dsi[t] = v;
            dsT[t * hw16 + i] = v;
          }
          for (int64_t t = s.keys; t < t16; ++t) dsi[t] = T(0);
        }
      }
      // dq[i] = sum_t ds[i][t] k[t]  (K = T rows of kpad)
      gemm(ds.data(), t16, s.rows, kpad.data(), s.keys, d16, d16, T(1), out.data(), d16, tmp.data());
      T* dq_bh = dq + bh * s.rows * s.dim;
      for (int64_t i = 0; i < s.rows; ++i) std::memcpy(dq_bh + i * s.dim, out.data() + i * d16, sizeof(T) * s.dim);
      // dk[t] = sum_i ds[i][t] q[i]  (K = HW rows of qpad)
      gemm(dsT.data(), hw16, s.keys, qpad.data(), s.rows, d16, d16, T(1), out.data(), d16, tmp.data());
      T* dk_bh = dk + bh * s.keys * s.dim;
      for (int64_t t = 0; t < s.keys; ++t) std::memcpy(dk_bh + t * s.dim, out.data() + t * d16, sizeof(T) * s.dim);
    }
  });
}

struct CpuKernels {
  static constexpr KernelTypes kTypes = KernelTypes::FloatOrDouble;

  // out (= or +=) the head-mean probabilities; operands and out in the compute type.
  static void forward(const ProbsMeanInputs& in, const at::Tensor& out, bool accumulate) {
    const at::Tensor &q = in.q, &k = in.k;
    const Sizes s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "cross_attention_probs_mean_cpu", [&] {
      const int64_t qs[3] = {q.stride(0), q.stride(1), q.stride(2)};
      const int64_t ks[3] = {k.stride(0), k.stride(1), k.stride(2)};
      const int64_t os[3] = {out.stride(0), out.stride(1), out.stride(2)};
      forward_kernel<scalar_t>(q.data_ptr<scalar_t>(), qs, k.data_ptr<scalar_t>(), ks,
                               in.bias.defined() ? in.bias.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(),
                               os, s, static_cast<scalar_t>(in.scale), static_cast<scalar_t>(in.weight), accumulate);
    });
  }

  static void backward(const ProbsMeanBackward& p) {
    const at::Tensor &q = p.in.q, &k = p.in.k, &g = p.grad;
    const Sizes s{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
    AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "cross_attention_probs_mean_backward_cpu", [&] {
      const int64_t gs[3] = {g.stride(0), g.stride(1), g.stride(2)};
      const int64_t qs[3] = {q.stride(0), q.stride(1), q.stride(2)};
      const int64_t ks[3] = {k.stride(0), k.stride(1), k.stride(2)};
      backward_kernel<scalar_t>(g.data_ptr<scalar_t>(), gs, q.data_ptr<scalar_t>(), qs, k.data_ptr<scalar_t>(), ks,
                                p.in.bias.defined() ? p.in.bias.data_ptr<scalar_t>() : nullptr,
                                p.dq.data_ptr<scalar_t>(), p.dk.data_ptr<scalar_t>(), s,
                                static_cast<scalar_t>(p.in.scale), static_cast<scalar_t>(p.in.weight));
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_cross_attention_probs_mean<CpuKernels>(m); }

}  // namespace dapo_fast
