// resized_argmax CUDA kernel: one block per map evaluates every output pixel (the math and the
// tie rule of resized_argmax_common.h) and reduces (value, index) across the block.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "resized_argmax_common.h"
#include "resized_argmax_cuda.h"

namespace dapo_fast {
namespace {

using namespace resized_argmax_math;

// NaN is the maximum (the first NaN wins), then larger values, then the smaller index.
struct Wins {
  __device__ bool operator()(double v, long long i, double best, long long best_i) const {
    if (i < 0) return false;
    if (best_i < 0) return true;
    const bool v_nan = v != v, b_nan = best != best;
    if (v_nan || b_nan) return v_nan && (!b_nan || i < best_i);
    return v > best || (v == best && i < best_i);
  }
};

template <typename scalar_t>
__global__ void resized_argmax_kernel(const scalar_t* __restrict__ maps, const int64_t* __restrict__ sizes,
                                      int64_t* __restrict__ out, long long h, long long w) {
  __shared__ double sv[kBlock];
  __shared__ long long si[kBlock];
  const long long n = blockIdx.x;
  const long long out_h = sizes[2 * n], out_w = sizes[2 * n + 1];
  const scalar_t* src = maps + n * h * w;
  double best = 0.0;
  long long best_i = -1;
  for (long long idx = threadIdx.x; idx < out_h * out_w; idx += blockDim.x) {
    const Tap ty = axis_tap(idx / out_w, out_h, h);
    const Tap tx = axis_tap(idx % out_w, out_w, w);
    const double v = bilinear(ty, tx, (double)to_acc(src[ty.low * w + tx.low]), (double)to_acc(src[ty.low * w + tx.high]),
                              (double)to_acc(src[ty.high * w + tx.low]), (double)to_acc(src[ty.high * w + tx.high]));
    if (Wins()(v, idx, best, best_i)) best = v, best_i = idx;
  }
  block_argmax(best, best_i, sv, si, Wins());
  if (threadIdx.x == 0) {
    const long long idx = best_i < 0 ? 0 : best_i;
    out[2 * n] = idx / out_w;
    out[2 * n + 1] = idx % out_w;
  }
}

}  // namespace

void resized_argmax_cuda_launch(DType dtype, const void* heatmaps, const int64_t* sizes, int64_t* out, int64_t n,
                                int64_t h, int64_t w, void* stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    resized_argmax_kernel<scalar_t><<<grid_of(n), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(heatmaps), sizes, out, h, w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
