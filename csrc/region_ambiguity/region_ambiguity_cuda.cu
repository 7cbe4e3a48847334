// region_ambiguity CUDA kernel: one block per map computes the scores of every proposal, the
// foreground, the background union, the sums and the gradient field in one launch. The math is
// region_ambiguity_common.h and soft_iou_common.h.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "../common/proposal_masks.cuh"
#include "../proposal_alignment/proposal_alignment_common.h"
#include "region_ambiguity_common.h"
#include "region_ambiguity_cuda.h"

namespace dapo_fast {
namespace {

using proposal_alignment_math::FirstMax;
using namespace soft_iou_math;

// At pixel i: the union (max) of the valid masks other than the foreground, and the foreground's
// value (0 without one).
template <typename acc_t, typename mask_t>
__device__ __forceinline__ void union_and_foreground(const mask_t* mb, const bool* vb, long long fg, long long i,
                                                     const MaskSizes& n, acc_t& bg, acc_t& fv) {
  bg = 0;
  for (long long p = 0; p < n.p; ++p) {
    if (p == fg || !vb[p]) continue;
    const acc_t v = mask_value<acc_t>(mb[p * n.hw + i]);
    bg = v > bg ? v : bg;
  }
  fv = fg >= 0 ? mask_value<acc_t>(mb[fg * n.hw + i]) : acc_t(0);
}

template <typename scalar_t, typename mask_t>
__global__ void region_ambiguity_kernel(const scalar_t* __restrict__ response, const mask_t* __restrict__ masks,
                                        const bool* __restrict__ valid, scalar_t* __restrict__ ambiguity,
                                        int64_t* __restrict__ foreground, scalar_t* __restrict__ field, MaskSizes n,
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
    acc_t bg, fv;
    union_and_foreground(mb, vb, fg, i, n, bg, fv);
    a_if += rv * fv, a_sf += fv, a_ib += rv * bg, a_sb += bg, a_sr += rv;
  }
  const acc_t inter_f = block_sum(a_if, sv), sum_f = block_sum(a_sf, sv);
  const acc_t inter_b = block_sum(a_ib, sv), sum_b = block_sum(a_sb, sv), sum_r = block_sum(a_sr, sv);
  const acc_t den_f = soft_denominator(inter_f, sum_r, sum_f, variant, eps);
  const acc_t den_b = soft_denominator(inter_b, sum_r, sum_b, variant, eps);
  if (threadIdx.x == 0) {
    ambiguity[bs] = from_acc<scalar_t>(region_ambiguity_math::ambiguity(inter_f, den_f, inter_b, den_b));
    foreground[bs] = fg;
  }
  if (field == nullptr) return;
  acc_t a_f, c_f, a_b, c_b;
  soft_iou_grad_coeffs(inter_f, den_f, variant, a_f, c_f);
  soft_iou_grad_coeffs(inter_b, den_b, variant, a_b, c_b);
  for (long long i = threadIdx.x; i < n.hw; i += blockDim.x) {
    acc_t bg, fv;
    union_and_foreground(mb, vb, fg, i, n, bg, fv);
    field[bs * n.hw + i] = from_acc<scalar_t>(region_ambiguity_math::field(bg, fv, a_b, a_f, c_f - c_b));
  }
}

}  // namespace

void region_ambiguity_cuda_launch(DType dtype, bool masks_are_bytes, const void* response, const void* masks,
                                  const bool* valid, void* ambiguity, int64_t* foreground, void* field,
                                  const MaskSizes& n, int variant, double eps, void* stream) {
  const long long maps = n.b * n.s;
  if (maps == 0) return;
  with_mask_types(dtype, masks_are_bytes, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    region_ambiguity_kernel<scalar_t, mask_t><<<grid_of(maps), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), valid,
        static_cast<scalar_t*>(ambiguity), foreground, static_cast<scalar_t*>(field), n, variant, eps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
