// weighted_smooth_l1 CUDA kernels: one thread per element; the math is
// weighted_smooth_l1_common.h. The sum is two deterministic passes (fixed chunks, then in order).
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "weighted_smooth_l1_common.h"
#include "weighted_smooth_l1_cuda.h"

namespace dapo_fast {
namespace {

using namespace smooth_l1_math;
constexpr long long kChunk = 4096;

template <typename scalar_t>
__device__ double sl1_term(const scalar_t* x, const scalar_t* y, const scalar_t* w, long long i, double beta) {
  using acc_t = typename AccType<scalar_t>::type;
  return static_cast<double>(to_acc(w[i]) * smooth_l1(to_acc(x[i]) - to_acc(y[i]), static_cast<acc_t>(beta)));
}

template <typename scalar_t>
__global__ void sl1_none_kernel(const scalar_t* x, const scalar_t* y, const scalar_t* w, scalar_t* out, long long n,
                                double beta) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_acc<scalar_t>(static_cast<typename AccType<scalar_t>::type>(sl1_term(x, y, w, i, beta)));
}

template <typename scalar_t>
__global__ void sl1_partial_kernel(const scalar_t* x, const scalar_t* y, const scalar_t* w, double* partials,
                                   long long n, double beta) {
  __shared__ double shared[kBlock];
  const long long start = blockIdx.x * kChunk;
  const long long stop = start + kChunk < n ? start + kChunk : n;
  double s = 0.0;
  for (long long i = start + threadIdx.x; i < stop; i += blockDim.x) s += sl1_term(x, y, w, i, beta);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

template <typename scalar_t>
__global__ void sl1_finish_kernel(const double* partials, long long chunks, long long n, int reduction, scalar_t* out) {
  double total = 0.0;
  for (long long c = 0; c < chunks; ++c) total += partials[c];
  if (reduction == 2) total = n > 0 ? total / static_cast<double>(n) : 0.0 / 0.0;
  *out = from_acc<scalar_t>(static_cast<typename AccType<scalar_t>::type>(total));
}

template <typename scalar_t>
__global__ void sl1_backward_kernel(const scalar_t* g, const scalar_t* x, const scalar_t* y, const scalar_t* w,
                                    scalar_t* out, long long n, double beta, int reduction) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const acc_t scale = reduction == 2 ? acc_t(1) / static_cast<acc_t>(n) : acc_t(1);
  const acc_t gi = to_acc(reduction == 0 ? g[i] : g[0]) * scale;
  out[i] = from_acc<scalar_t>(gi * to_acc(w[i]) * smooth_l1_grad(to_acc(x[i]) - to_acc(y[i]), static_cast<acc_t>(beta)));
}

}  // namespace

int64_t weighted_smooth_l1_partials(int64_t n) { return (n + kChunk - 1) / kChunk + 1; }

void weighted_smooth_l1_cuda_launch(DType dtype, const void* input, const void* target, const void* weight, void* out,
                                    double* partials, int64_t n, double beta, int reduction, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto x = static_cast<const T*>(input), y = static_cast<const T*>(target), w = static_cast<const T*>(weight);
    if (reduction == 0) {
      if (n > 0) {
        sl1_none_kernel<T><<<grid_covering(n, kBlock), kBlock, 0, st>>>(x, y, w, static_cast<T*>(out), n, beta);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      }
      return;
    }
    const long long chunks = (n + kChunk - 1) / kChunk;
    if (chunks > 0) {
      sl1_partial_kernel<T><<<grid_of(chunks), kBlock, 0, st>>>(x, y, w, partials, n, beta);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    sl1_finish_kernel<T><<<1, 1, 0, st>>>(partials, chunks, n, reduction, static_cast<T*>(out));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void weighted_smooth_l1_backward_cuda_launch(DType dtype, const void* grad, const void* input, const void* target,
                                             const void* weight, void* out, int64_t n, double beta, int reduction,
                                             void* stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    sl1_backward_kernel<T><<<grid_covering(n, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(input), static_cast<const T*>(target),
        static_cast<const T*>(weight), static_cast<T*>(out), n, beta, reduction);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
