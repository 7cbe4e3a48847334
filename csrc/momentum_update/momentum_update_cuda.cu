// Multi-tensor EMA, CUDA: one launch per dtype over a chunk table; block c updates chunk c.
#include <cuda_runtime.h>

#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "momentum_update_common.h"
#include "momentum_update_cuda.h"

namespace dapo_fast {
namespace {

template <typename scalar_t>
__global__ void ema_kernel(const int64_t* chunks, const int64_t* pointers, double momentum) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t* ch = chunks + blockIdx.x * 3;
  scalar_t* t = reinterpret_cast<scalar_t*>(pointers[ch[0] * 2]);
  const scalar_t* s = reinterpret_cast<const scalar_t*>(pointers[ch[0] * 2 + 1]);
  const acc_t m = static_cast<acc_t>(momentum), one_m = static_cast<acc_t>(1.0 - momentum);
  for (int64_t i = ch[1] + threadIdx.x; i < ch[2]; i += blockDim.x)
    t[i] = from_acc<scalar_t>(momentum_math::ema(to_acc(t[i]), to_acc(s[i]), m, one_m));
}

}  // namespace

void momentum_update_cuda_launch(DType dtype, const int64_t* chunks, int64_t n_chunks, const int64_t* pointers,
                                 double momentum, void* stream) {
  if (n_chunks == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    ema_kernel<scalar_t><<<grid_of(n_chunks), 256, 0, static_cast<cudaStream_t>(stream)>>>(chunks, pointers,
                                                                                          momentum);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
