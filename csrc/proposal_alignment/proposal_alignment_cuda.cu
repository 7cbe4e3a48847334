// proposal_alignment CUDA kernels: one block per (map, proposal) finds the first maximum of
// response * mask (block_argmax); the backward is one thread per map.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "../common/proposal_masks.cuh"
#include "proposal_alignment_common.h"
#include "proposal_alignment_cuda.h"

namespace dapo_fast {
namespace {

using proposal_alignment_math::FirstMax;

template <typename scalar_t, typename mask_t>
__global__ void alignment_kernel(const scalar_t* __restrict__ response, const mask_t* __restrict__ masks,
                                 const bool* __restrict__ valid, scalar_t* __restrict__ scores,
                                 int64_t* __restrict__ argmax, MaskSizes n) {
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
                                          const mask_t* __restrict__ masks, scalar_t* __restrict__ out, MaskSizes n) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long bs = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (bs >= n.b * n.s) return;
  const long long b = bs / n.s;
  for (long long p = 0; p < n.p; ++p) {
    const long long at = argmax[bs * n.p + p];
    if (at < 0 || at >= n.hw) continue;  // invalid mask (-1), or not a pixel of this map
    const acc_t g = to_acc(grad[bs * n.p + p]) * mask_value<acc_t>(masks[(b * n.p + p) * n.hw + at]);
    out[bs * n.hw + at] = from_acc<scalar_t>(to_acc(out[bs * n.hw + at]) + g);
  }
}

}  // namespace

void proposal_alignment_cuda_launch(DType dtype, bool masks_are_bytes, const void* response, const void* masks,
                                    const bool* valid, void* scores, int64_t* argmax, const MaskSizes& n,
                                    void* stream) {
  const long long pairs = n.b * n.s * n.p;
  if (pairs == 0) return;
  with_mask_types(dtype, masks_are_bytes, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    alignment_kernel<scalar_t, mask_t><<<grid_of(pairs), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), valid,
        static_cast<scalar_t*>(scores), argmax, n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void proposal_alignment_backward_cuda_launch(DType dtype, bool masks_are_bytes, const void* grad,
                                             const int64_t* argmax, const void* masks, void* out,
                                             const MaskSizes& n, void* stream) {
  const long long maps = n.b * n.s;
  if (maps == 0 || n.p == 0) return;
  with_mask_types(dtype, masks_are_bytes, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    alignment_backward_kernel<scalar_t, mask_t><<<grid_covering(maps, kBlock), kBlock, 0,
                                                  static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(grad), argmax, static_cast<const mask_t*>(masks), static_cast<scalar_t*>(out), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
