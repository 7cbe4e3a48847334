// PCNet CUDA kernels: one block per (map, proposal) for the pairwise reductions, one block per
// map for region_ambiguity (scores of every proposal, foreground, background union, sums and the
// gradient field in one launch). The soft-IoU math is pcnet_common.h.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "pcnet_common.h"
#include "pcnet_cuda.h"

namespace dapo_fast {
namespace {

using namespace pcnet_math;

template <typename acc_t>
__device__ __forceinline__ acc_t mask_value(uint8_t v) { return static_cast<acc_t>(v); }
template <typename acc_t, typename T>
__device__ __forceinline__ acc_t mask_value(T v) { return static_cast<acc_t>(to_acc(v)); }

struct FirstMax {  // larger value, then smaller index; NaN never wins
  template <typename T>
  __device__ bool operator()(T v, long long i, T best, long long best_i) const {
    if (i < 0 || v != v) return false;
    return best_i < 0 || v > best || (v == best && i < best_i);
  }
};

template <typename scalar_t, typename mask_t>
__global__ void alignment_kernel(const scalar_t* __restrict__ response, const mask_t* __restrict__ masks,
                                 const bool* __restrict__ valid, scalar_t* __restrict__ scores,
                                 int64_t* __restrict__ argmax, PcnetSizes n) {
  using acc_t = typename AccType<scalar_t>::type;
  __shared__ acc_t sv[kBlock];
  __shared__ long long si[kBlock];
  const long long pair = blockIdx.x;  // (b, s, p)
  const long long p = pair % n.p, bs = pair / n.p, b = bs / n.s;
  if (!valid[b * n.p + p]) {
    if (threadIdx.x == 0) scores[pair] = from_acc<scalar_t>(acc_t(0)), argmax[pair] = -1;
    return;
  }
  const scalar_t* r = response + bs * n.hw;
  const mask_t* m = masks + (b * n.p + p) * n.hw;
  acc_t best = 0;
  long long best_i = -1;
  for (long long i = threadIdx.x; i < n.hw; i += blockDim.x) {
    const acc_t v = to_acc(r[i]) * mask_value<acc_t>(m[i]);
    if (FirstMax()(v, i, best, best_i)) best = v, best_i = i;
  }
  block_argmax(best, best_i, sv, si, FirstMax());
  if (threadIdx.x == 0) {
    const long long at = best_i < 0 ? 0 : best_i;
    scores[pair] = from_acc<scalar_t>(to_acc(r[at]) * mask_value<acc_t>(m[at]));
    argmax[pair] = at;
  }
}

template <typename scalar_t, typename mask_t>
__global__ void alignment_backward_kernel(const scalar_t* __restrict__ grad, const int64_t* __restrict__ argmax,
                                          const mask_t* __restrict__ masks, scalar_t* __restrict__ out, PcnetSizes n) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long bs = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (bs >= n.b * n.s) return;
  const long long b = bs / n.s;
  for (long long p = 0; p < n.p; ++p) {
    const long long at = argmax[bs * n.p + p];
    if (at < 0) continue;
    const acc_t g = to_acc(grad[bs * n.p + p]) * mask_value<acc_t>(masks[(b * n.p + p) * n.hw + at]);
    out[bs * n.hw + at] = from_acc<scalar_t>(to_acc(out[bs * n.hw + at]) + g);
  }
}

// Sums of one (map, proposal) pair: inter, sum r, sum m.
template <typename scalar_t, typename mask_t, typename acc_t>
__device__ void pair_sums(const scalar_t* r, const mask_t* m, long long hw, acc_t* shared, acc_t& inter, acc_t& sr,
                          acc_t& sm) {
  acc_t a = 0, b = 0, c = 0;
  for (long long i = threadIdx.x; i < hw; i += blockDim.x) {
    const acc_t rv = to_acc(r[i]), mv = mask_value<acc_t>(m[i]);
    a += rv * mv;
    b += rv;
    c += mv;
  }
  inter = block_sum(a, shared);
  sr = block_sum(b, shared);
  sm = block_sum(c, shared);
}

template <typename scalar_t, typename mask_t>
__global__ void soft_iou_kernel(const scalar_t* __restrict__ response, const mask_t* __restrict__ masks,
                                scalar_t* __restrict__ out, double* __restrict__ coeffs, PcnetSizes n, int variant,
                                double eps) {
  using acc_t = typename AccType<scalar_t>::type;
  __shared__ acc_t shared[kBlock];
  const long long pair = blockIdx.x;
  const long long p = pair % n.p, bs = pair / n.p, b = bs / n.s;
  acc_t inter, sr, sm;
  pair_sums(response + bs * n.hw, masks + (b * n.p + p) * n.hw, n.hw, shared, inter, sr, sm);
  if (threadIdx.x != 0) return;
  const acc_t den = soft_denominator(inter, sr, sm, variant, static_cast<acc_t>(eps));
  if (coeffs == nullptr) {
    out[pair] = from_acc<scalar_t>(inter / den);
  } else {
    acc_t a, c;
    soft_iou_grad_coeffs(inter, den, variant, a, c);
    coeffs[2 * pair] = a;
    coeffs[2 * pair + 1] = c;
  }
}

template <typename scalar_t, typename mask_t>
__global__ void soft_iou_backward_kernel(const scalar_t* __restrict__ grad, const mask_t* __restrict__ masks,
                                         const double* __restrict__ coeffs, scalar_t* __restrict__ out, PcnetSizes n) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= n.b * n.s * n.hw) return;
  const long long i = idx % n.hw, bs = idx / n.hw, b = bs / n.s;
  acc_t g = 0, constant = 0;
  for (long long p = 0; p < n.p; ++p) {
    const acc_t gp = to_acc(grad[bs * n.p + p]);
    g += gp * static_cast<acc_t>(coeffs[2 * (bs * n.p + p)]) * mask_value<acc_t>(masks[(b * n.p + p) * n.hw + i]);
    constant += gp * static_cast<acc_t>(coeffs[2 * (bs * n.p + p) + 1]);
  }
  out[idx] = from_acc<scalar_t>(g - constant);
}

template <typename scalar_t, typename mask_t>
__global__ void region_ambiguity_kernel(const scalar_t* __restrict__ response, const mask_t* __restrict__ masks,
                                        const bool* __restrict__ valid, scalar_t* __restrict__ ambiguity,
                                        int64_t* __restrict__ foreground, scalar_t* __restrict__ field, PcnetSizes n,
                                        int variant, double eps_d) {
  using acc_t = typename AccType<scalar_t>::type;
  __shared__ acc_t sv[kBlock];
  __shared__ long long si[kBlock];
  const long long bs = blockIdx.x, b = bs / n.s;
  const scalar_t* r = response + bs * n.hw;
  const mask_t* mb = masks + b * n.p * n.hw;
  const bool* vb = valid + b * n.p;
  const acc_t eps = static_cast<acc_t>(eps_d);
  // foreground: the valid proposal with the highest max(r * m), lowest index on ties
  long long fg = -1;
  acc_t fg_score = 0;
  for (long long p = 0; p < n.p; ++p) {
    if (!vb[p]) continue;
    acc_t best = 0;
    long long best_i = -1;
    for (long long i = threadIdx.x; i < n.hw; i += blockDim.x) {
      const acc_t v = to_acc(r[i]) * mask_value<acc_t>(mb[p * n.hw + i]);
      if (FirstMax()(v, i, best, best_i)) best = v, best_i = i;
    }
    block_argmax(best, best_i, sv, si, FirstMax());
    const acc_t score = best_i < 0 ? acc_t(0) : best;
    if (fg < 0 || score > fg_score) fg = p, fg_score = score;
  }
  // background union of the other valid masks, recomputed per pixel
  acc_t a_if = 0, a_sf = 0, a_ib = 0, a_sb = 0, a_sr = 0;
  for (long long i = threadIdx.x; i < n.hw; i += blockDim.x) {
    const acc_t rv = to_acc(r[i]);
    acc_t bg = 0;
    for (long long p = 0; p < n.p; ++p) {
      if (p == fg || !vb[p]) continue;
      const acc_t v = mask_value<acc_t>(mb[p * n.hw + i]);
      bg = v > bg ? v : bg;
    }
    const acc_t fv = fg >= 0 ? mask_value<acc_t>(mb[fg * n.hw + i]) : acc_t(0);
    a_if += rv * fv, a_sf += fv, a_ib += rv * bg, a_sb += bg, a_sr += rv;
  }
  const acc_t inter_f = block_sum(a_if, sv), sum_f = block_sum(a_sf, sv);
  const acc_t inter_b = block_sum(a_ib, sv), sum_b = block_sum(a_sb, sv), sum_r = block_sum(a_sr, sv);
  const acc_t den_f = soft_denominator(inter_f, sum_r, sum_f, variant, eps);
  const acc_t den_b = soft_denominator(inter_b, sum_r, sum_b, variant, eps);
  if (threadIdx.x == 0) {
    ambiguity[bs] = from_acc<scalar_t>(acc_t(1) - (inter_f / den_f - inter_b / den_b));
    foreground[bs] = fg;
  }
  if (field == nullptr) return;
  acc_t a_f, c_f, a_b, c_b;
  soft_iou_grad_coeffs(inter_f, den_f, variant, a_f, c_f);
  soft_iou_grad_coeffs(inter_b, den_b, variant, a_b, c_b);
  for (long long i = threadIdx.x; i < n.hw; i += blockDim.x) {
    acc_t bg = 0;
    for (long long p = 0; p < n.p; ++p) {
      if (p == fg || !vb[p]) continue;
      const acc_t v = mask_value<acc_t>(mb[p * n.hw + i]);
      bg = v > bg ? v : bg;
    }
    const acc_t fv = fg >= 0 ? mask_value<acc_t>(mb[fg * n.hw + i]) : acc_t(0);
    field[bs * n.hw + i] = from_acc<scalar_t>(bg * a_b - fv * a_f + (c_f - c_b));
  }
}

template <typename F>
void with_types(DType dtype, bool masks_u8, F&& f) {
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    if (masks_u8) {
      f(scalar_t{}, uint8_t{});
    } else {
      f(scalar_t{}, scalar_t{});
    }
  });
}

}  // namespace

void proposal_alignment_cuda_launch(DType dtype, bool masks_u8, const void* response, const void* masks,
                                    const bool* valid, void* scores, int64_t* argmax, const PcnetSizes& n,
                                    void* stream) {
  const long long pairs = n.b * n.s * n.p;
  if (pairs == 0) return;
  with_types(dtype, masks_u8, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    alignment_kernel<scalar_t, mask_t><<<(unsigned)pairs, kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), valid,
        static_cast<scalar_t*>(scores), argmax, n);
  });
}

void proposal_alignment_backward_cuda_launch(DType dtype, bool masks_u8, const void* grad, const int64_t* argmax,
                                             const void* masks, void* out, const PcnetSizes& n, void* stream) {
  const long long maps = n.b * n.s;
  if (maps == 0 || n.p == 0) return;
  with_types(dtype, masks_u8, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    alignment_backward_kernel<scalar_t, mask_t><<<blocks_for(maps, kBlock), kBlock, 0,
                                                  static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(grad), argmax, static_cast<const mask_t*>(masks), static_cast<scalar_t*>(out), n);
  });
}

void soft_iou_cuda_launch(DType dtype, bool masks_u8, const void* response, const void* masks, void* out,
                          const PcnetSizes& n, int variant, double eps, void* stream) {
  const long long pairs = n.b * n.s * n.p;
  if (pairs == 0) return;
  with_types(dtype, masks_u8, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    soft_iou_kernel<scalar_t, mask_t><<<(unsigned)pairs, kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), static_cast<scalar_t*>(out),
        nullptr, n, variant, eps);
  });
}

void soft_iou_backward_cuda_launch(DType dtype, bool masks_u8, const void* grad, const void* response,
                                   const void* masks, double* coeffs, void* out, const PcnetSizes& n, int variant,
                                   double eps, void* stream) {
  const long long pairs = n.b * n.s * n.p;
  const long long total = n.b * n.s * n.hw;
  if (total == 0) return;
  with_types(dtype, masks_u8, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    auto s = static_cast<cudaStream_t>(stream);
    if (pairs > 0)
      soft_iou_kernel<scalar_t, mask_t><<<(unsigned)pairs, kBlock, 0, s>>>(
          static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), nullptr, coeffs, n, variant, eps);
    soft_iou_backward_kernel<scalar_t, mask_t><<<blocks_for(total, kBlock), kBlock, 0, s>>>(
        static_cast<const scalar_t*>(grad), static_cast<const mask_t*>(masks), coeffs, static_cast<scalar_t*>(out), n);
  });
}

void region_ambiguity_cuda_launch(DType dtype, bool masks_u8, const void* response, const void* masks,
                                  const bool* valid, void* ambiguity, int64_t* foreground, void* field,
                                  const PcnetSizes& n, int variant, double eps, void* stream) {
  const long long maps = n.b * n.s;
  if (maps == 0) return;
  with_types(dtype, masks_u8, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    region_ambiguity_kernel<scalar_t, mask_t><<<(unsigned)maps, kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), valid,
        static_cast<scalar_t*>(ambiguity), foreground, static_cast<scalar_t*>(field), n, variant, eps);
  });
}

}  // namespace dapo_fast
