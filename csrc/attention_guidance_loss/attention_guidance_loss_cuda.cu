// Attention guidance loss (DAPO eq. 3), CUDA. Forward: the chunked deterministic reduction of
// common/entity_map_loss.cuh with the closed form of attention_guidance_loss_common.h.
// Backward: one thread per (sample, pixel) recomputes S and writes every entity's gradient.
#include <cuda_runtime.h>

#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "../common/entity_map_loss.cuh"
#include "attention_guidance_loss_common.h"
#include "attention_guidance_loss_cuda.h"

namespace dapo_fast {
namespace {

using namespace attention_guidance_math;
using map_loss_cuda::kThreads;

struct GuidanceClosedForm {
  __device__ double operator()(const double* sums, const bool* valid, int64_t entities) const {
    return guidance_loss(sums[0], sums[1], sums[2], map_loss_cuda::valid_count(valid, 0, entities));
  }
};

template <typename scalar_t>
__global__ void guidance_backward_kernel(const double* __restrict__ grad, const scalar_t* __restrict__ h,
                                         const scalar_t* __restrict__ a, const bool* __restrict__ valid,
                                         scalar_t* __restrict__ grad_h, scalar_t* __restrict__ grad_a,
                                         MapLossSizes s) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t total = s.batch * s.pixels;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t b = idx / s.pixels, p = idx % s.pixels;
    const int count = map_loss_cuda::valid_count(valid, b, s.entities);
    const GuidanceGrad c = guidance_grad(grad[b], count);
    acc_t sum = 0;
    for (int64_t e = 0; e < s.entities; ++e)
      if (valid[b * s.entities + e]) sum += to_acc(a[(b * s.entities + e) * s.pixels + p]);
    const acc_t ch = static_cast<acc_t>(c.ch), ca = static_cast<acc_t>(c.ca), cs = static_cast<acc_t>(c.cs);
    for (int64_t e = 0; e < s.entities; ++e) {
      const int64_t i = (b * s.entities + e) * s.pixels + p;
      // fewer than two valid entities: the loss is 0 whatever the maps hold, so is the gradient
      const bool ok = valid[b * s.entities + e] && count >= 2;
      const acc_t av = to_acc(a[i]), hv = to_acc(h[i]);
      grad_a[i] = from_acc<scalar_t>(ok ? ch * (av - hv) + ca * av + cs * sum : acc_t(0));
      if (grad_h != nullptr) grad_h[i] = from_acc<scalar_t>(ok ? ch * (hv - av) : acc_t(0));
    }
  }
}

}  // namespace

void attention_guidance_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                         double* partials, void* loss, const MapLossSizes& s, void* stream) {
  map_loss_cuda::launch_forward<3>(dtype, h, a, valid, partials, loss, s, GuidanceClosedForm(), stream);
}

void attention_guidance_loss_backward_cuda_launch(DType dtype, const double* grad, const void* h, const void* a,
                                                  const bool* valid, void* grad_h, void* grad_a,
                                                  const MapLossSizes& s, void* stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    guidance_backward_kernel<scalar_t><<<blocks_for(s.batch * s.pixels, kThreads), kThreads, 0,
                                         static_cast<cudaStream_t>(stream)>>>(
        grad, static_cast<const scalar_t*>(h), static_cast<const scalar_t*>(a), valid,
        static_cast<scalar_t*>(grad_h), static_cast<scalar_t*>(grad_a), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
