// Diffusion-guided loss (DAPO eq. 5), CUDA. Forward: the chunked deterministic reduction of
// common/entity_map_loss.cuh (fit only: the loss is its sum). Backward: one thread per element.
#include <cuda_runtime.h>

#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "../common/entity_map_loss.cuh"
#include "diffusion_guided_loss_common.h"
#include "diffusion_guided_loss_cuda.h"

namespace dapo_fast {
namespace {

using map_loss_cuda::kThreads;

struct GuidedClosedForm {
  __device__ double operator()(const double* sums, const bool*, int64_t) const { return sums[0]; }
};

template <typename scalar_t>
__global__ void guided_backward_kernel(const double* __restrict__ grad, const scalar_t* __restrict__ h,
                                       const scalar_t* __restrict__ a, const bool* __restrict__ valid,
                                       scalar_t* __restrict__ grad_h, MapLossSizes s) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t total = s.batch * s.entities * s.pixels;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t be = idx / s.pixels;
    const acc_t g = static_cast<acc_t>(diffusion_guided_math::grad_scale(grad[be / s.entities]));
    grad_h[idx] = from_acc<scalar_t>(valid[be] ? g * (to_acc(h[idx]) - to_acc(a[idx])) : acc_t(0));
  }
}

}  // namespace

void diffusion_guided_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                       double* partials, void* loss, const MapLossSizes& s, void* stream) {
  map_loss_cuda::launch_forward<1>(dtype, h, a, valid, partials, loss, s, GuidedClosedForm(), stream);
}

void diffusion_guided_loss_backward_cuda_launch(DType dtype, const double* grad, const void* h, const void* a,
                                                const bool* valid, void* grad_h, const MapLossSizes& s,
                                                void* stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    guided_backward_kernel<scalar_t><<<blocks_for(s.batch * s.entities * s.pixels, kThreads), kThreads, 0,
                                       static_cast<cudaStream_t>(stream)>>>(
        grad, static_cast<const scalar_t*>(h), static_cast<const scalar_t*>(a), valid,
        static_cast<scalar_t*>(grad_h), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
