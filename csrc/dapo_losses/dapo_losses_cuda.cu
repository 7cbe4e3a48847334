// DAPO loss CUDA kernels. Forward: one block per (sample, chunk of pixels) reduces its chunk
// (valid entities only) into double partials; a second kernel adds a sample's partials in chunk
// order and applies the closed form of eq. 3 (dapo_losses_common.h): no atomics, deterministic.
// Backward: one thread per (sample, pixel) recomputes S and writes every entity's gradient.
#include <cuda_runtime.h>

#include "../common/cuda_dtype.cuh"
#include "../common/cuda_reduce.cuh"
#include "dapo_losses_common.h"
#include "dapo_losses_cuda.h"

namespace dapo_fast {
namespace {

using namespace dapo_losses_math;

constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;  // pixels per forward block

__device__ int valid_count(const bool* valid, int64_t b, int64_t entities) {
  int k = 0;
  for (int64_t e = 0; e < entities; ++e) k += valid[b * entities + e] ? 1 : 0;
  return k;
}

// values per chunk: 3 (guidance) or 1 (guided)
template <typename scalar_t, int kValues>
__global__ void partials_kernel(const scalar_t* __restrict__ h, const scalar_t* __restrict__ a,
                                const bool* __restrict__ valid, double* __restrict__ partials, MapLossSizes s,
                                int64_t chunks) {
  __shared__ double scratch[32];
  const int64_t b = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int64_t p0 = chunk * kChunk;
  const int64_t p1 = p0 + kChunk < s.pixels ? p0 + kChunk : s.pixels;
  double fit = 0, norm = 0, total = 0;
  for (int64_t p = p0 + threadIdx.x; p < p1; p += blockDim.x) {
    double sum = 0;
    for (int64_t e = 0; e < s.entities; ++e) {
      if (!valid[b * s.entities + e]) continue;
      const int64_t idx = (b * s.entities + e) * s.pixels + p;
      const double av = static_cast<double>(to_acc(a[idx]));
      const double diff = static_cast<double>(to_acc(h[idx])) - av;
      fit += diff * diff;
      norm += av * av;
      sum += av;
    }
    total += sum * sum;
  }
  double* out = partials + (b * chunks + chunk) * kValues;
  fit = block_sum(fit, scratch);
  if (threadIdx.x == 0) out[0] = fit;
  if (kValues == 3) {
    norm = block_sum(norm, scratch);
    total = block_sum(total, scratch);
    if (threadIdx.x == 0) {
      out[1] = norm;
      out[2] = total;
    }
  }
}

template <typename scalar_t, int kValues>
__global__ void finalize_kernel(const double* __restrict__ partials, const bool* __restrict__ valid,
                                scalar_t* __restrict__ loss, MapLossSizes s, int64_t chunks) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= s.batch) return;
  double sums[3] = {0, 0, 0};
  for (int64_t c = 0; c < chunks; ++c)
    for (int v = 0; v < kValues; ++v) sums[v] += partials[(b * chunks + c) * kValues + v];
  const double value = kValues == 3 ? guidance_loss(sums[0], sums[1], sums[2], valid_count(valid, b, s.entities))
                                    : sums[0];
  loss[b] = from_acc<scalar_t>(static_cast<typename AccType<scalar_t>::type>(value));
}

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
    const GuidanceGrad c = guidance_grad(grad[b], valid_count(valid, b, s.entities));
    acc_t sum = 0;
    for (int64_t e = 0; e < s.entities; ++e)
      if (valid[b * s.entities + e]) sum += to_acc(a[(b * s.entities + e) * s.pixels + p]);
    const acc_t ch = static_cast<acc_t>(c.ch), ca = static_cast<acc_t>(c.ca), cs = static_cast<acc_t>(c.cs);
    for (int64_t e = 0; e < s.entities; ++e) {
      const int64_t i = (b * s.entities + e) * s.pixels + p;
      const bool ok = valid[b * s.entities + e];
      const acc_t av = to_acc(a[i]), hv = to_acc(h[i]);
      grad_a[i] = from_acc<scalar_t>(ok ? ch * (av - hv) + ca * av + cs * sum : acc_t(0));
      if (grad_h != nullptr) grad_h[i] = from_acc<scalar_t>(ok ? ch * (hv - av) : acc_t(0));
    }
  }
}

template <typename scalar_t>
__global__ void guided_backward_kernel(const double* __restrict__ grad, const scalar_t* __restrict__ h,
                                       const scalar_t* __restrict__ a, const bool* __restrict__ valid,
                                       scalar_t* __restrict__ grad_h, MapLossSizes s) {
  using acc_t = typename AccType<scalar_t>::type;
  const int64_t total = s.batch * s.entities * s.pixels;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t be = idx / s.pixels;
    const acc_t g = static_cast<acc_t>(2.0 * grad[be / s.entities]);
    grad_h[idx] = from_acc<scalar_t>(valid[be] ? g * (to_acc(h[idx]) - to_acc(a[idx])) : acc_t(0));
  }
}

template <int kValues>
void launch_forward(DType dtype, const void* h, const void* a, const bool* valid, double* partials, void* loss,
                    const MapLossSizes& s, void* stream) {
  const int64_t chunks = map_loss_chunks(s);
  auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    partials_kernel<scalar_t, kValues><<<static_cast<unsigned>(s.batch * chunks), kThreads, 0, st>>>(
        static_cast<const scalar_t*>(h), static_cast<const scalar_t*>(a), valid, partials, s, chunks);
    finalize_kernel<scalar_t, kValues><<<blocks_for(s.batch, 128), 128, 0, st>>>(partials, valid,
                                                                               static_cast<scalar_t*>(loss), s, chunks);
  });
}

}  // namespace

int64_t map_loss_chunks(const MapLossSizes& s) {
  const int64_t chunks = (s.pixels + kChunk - 1) / kChunk;
  return chunks > 0 ? chunks : 1;
}

void attention_guidance_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                         double* partials, void* loss, const MapLossSizes& s, void* stream) {
  launch_forward<3>(dtype, h, a, valid, partials, loss, s, stream);
}

void diffusion_guided_loss_cuda_launch(DType dtype, const void* h, const void* a, const bool* valid,
                                       double* partials, void* loss, const MapLossSizes& s, void* stream) {
  launch_forward<1>(dtype, h, a, valid, partials, loss, s, stream);
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
  });
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
  });
}

}  // namespace dapo_fast
