// box_iou CUDA kernel: one thread per (image, row of a, row of b); the math is box_iou_common.h.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "box_iou_common.h"
#include "box_iou_cuda.h"

namespace dapo_fast {
namespace {

template <typename scalar_t>
__global__ void iou_kernel(const scalar_t* a, const scalar_t* b, scalar_t* out, long long batch, long long n,
                           long long m) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= batch * n * m) return;
  const long long j = idx % m, row = idx / m, img = row / n;
  acc_t ra[4], rb[4];
  load4(a + row * 4, ra);
  load4(b + (img * m + j) * 4, rb);
  out[idx] = from_acc<scalar_t>(box_math::iou(ra, rb));
}

}  // namespace

void box_iou_cuda_launch(DType dtype, const void* a, const void* b, void* out, int64_t batch, int64_t n, int64_t m,
                         void* stream) {
  const long long total = batch * n * m;
  if (total == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    iou_kernel<T><<<grid_covering(total, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out), batch, n, m);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
