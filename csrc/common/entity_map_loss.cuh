// The deterministic CUDA forward shared by the losses over per-entity maps
// (attention_guidance_loss, diffusion_guided_loss). .cu files only.
//
// One block per (sample, chunk of kMapLossCudaChunk pixels) reduces its chunk (valid entities
// only) into double partials: fit = sum ||h - a||^2 and, with kValues == 3, also
// norm = sum ||a||^2 and total = ||sum_valid a||^2. A second kernel adds a sample's partials in
// chunk order and applies the op's closed form. No atomics: the result does not depend on
// scheduling.
#pragma once
#include <cuda_runtime.h>

#include "cuda_dtype.cuh"
#include "cuda_launch.cuh"
#include "cuda_reduce.cuh"
#include "entity_map_loss.h"

namespace dapo_fast {
namespace map_loss_cuda {

constexpr int kThreads = 256;

__device__ inline int valid_count(const bool* valid, int64_t b, int64_t entities) {
  int k = 0;
  for (int64_t e = 0; e < entities; ++e) k += valid[b * entities + e] ? 1 : 0;
  return k;
}

// values per chunk: 3 (fit, norm, total) or 1 (fit)
template <typename scalar_t, int kValues>
__global__ void partials_kernel(const scalar_t* __restrict__ h, const scalar_t* __restrict__ a,
                                const bool* __restrict__ valid, double* __restrict__ partials, MapLossSizes s,
                                int64_t chunks) {
  constexpr int64_t kChunk = kMapLossCudaChunk;
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

// loss[b] = closed_form(sums of sample b's kValues partials, its entity_valid row, E)
template <typename scalar_t, int kValues, typename ClosedForm>
__global__ void finalize_kernel(const double* __restrict__ partials, const bool* __restrict__ valid,
                                scalar_t* __restrict__ loss, MapLossSizes s, int64_t chunks, ClosedForm closed_form) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= s.batch) return;
  double sums[3] = {0, 0, 0};
  for (int64_t c = 0; c < chunks; ++c)
    for (int v = 0; v < kValues; ++v) sums[v] += partials[(b * chunks + c) * kValues + v];
  const double value = closed_form(sums, valid + b * s.entities, s.entities);
  loss[b] = from_acc<scalar_t>(static_cast<typename AccType<scalar_t>::type>(value));
}

// partials: s.batch * map_loss_cuda_chunks(s) * kValues doubles of scratch; loss: [B] of dtype.
template <int kValues, typename ClosedForm>
void launch_forward(DType dtype, const void* h, const void* a, const bool* valid, double* partials, void* loss,
                    const MapLossSizes& s, ClosedForm closed_form, void* stream) {
  const int64_t chunks = map_loss_cuda_chunks(s);
  auto st = static_cast<cudaStream_t>(stream);
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    partials_kernel<scalar_t, kValues><<<grid_of(s.batch * chunks), kThreads, 0, st>>>(
        static_cast<const scalar_t*>(h), static_cast<const scalar_t*>(a), valid, partials, s, chunks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    finalize_kernel<scalar_t, kValues><<<grid_covering(s.batch, 128), 128, 0, st>>>(
        partials, valid, static_cast<scalar_t*>(loss), s, chunks, closed_form);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace map_loss_cuda
}  // namespace dapo_fast
