// soft_iou CUDA kernels: one block per (map, proposal) reduces the three sums of the soft IoU
// (soft_iou_common.h); the backward turns them into per-pair coefficients and then gives one
// thread per pixel.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "../common/proposal_masks.cuh"
#include "soft_iou_common.h"
#include "soft_iou_cuda.h"

namespace dapo_fast {
namespace {

using namespace soft_iou_math;

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
                                scalar_t* __restrict__ out, double* __restrict__ coeffs, MaskSizes n, int variant,
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
                                         const double* __restrict__ coeffs, scalar_t* __restrict__ out, MaskSizes n) {
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

}  // namespace

void soft_iou_cuda_launch(DType dtype, bool masks_are_bytes, const void* response, const void* masks, void* out,
                          const MaskSizes& n, int variant, double eps, void* stream) {
  const long long pairs = n.b * n.s * n.p;
  if (pairs == 0) return;
  with_mask_types(dtype, masks_are_bytes, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    soft_iou_kernel<scalar_t, mask_t><<<grid_of(pairs), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), static_cast<scalar_t*>(out),
        nullptr, n, variant, eps);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void soft_iou_backward_cuda_launch(DType dtype, bool masks_are_bytes, const void* grad, const void* response,
                                   const void* masks, double* coeffs, void* out, const MaskSizes& n, int variant,
                                   double eps, void* stream) {
  const long long pairs = n.b * n.s * n.p;
  const long long total = n.b * n.s * n.hw;
  if (total == 0) return;
  with_mask_types(dtype, masks_are_bytes, [&](auto st, auto mt) {
    using scalar_t = decltype(st);
    using mask_t = decltype(mt);
    auto s = static_cast<cudaStream_t>(stream);
    if (pairs > 0) {
      soft_iou_kernel<scalar_t, mask_t><<<grid_of(pairs), kBlock, 0, s>>>(
          static_cast<const scalar_t*>(response), static_cast<const mask_t*>(masks), nullptr, coeffs, n, variant, eps);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    soft_iou_backward_kernel<scalar_t, mask_t><<<grid_covering(total, kBlock), kBlock, 0, s>>>(
        static_cast<const scalar_t*>(grad), static_cast<const mask_t*>(masks), coeffs, static_cast<scalar_t*>(out), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
