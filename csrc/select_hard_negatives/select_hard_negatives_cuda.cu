// Greedy hard-negative selection, CUDA: one block per text b keeps the running uniqueness of
// all its (B-1)*N candidates; threads own other images (argmax, min-max) or candidates (update).
#include <cuda_runtime.h>

#include <cmath>

#include "../common/cuda_launch.cuh"
#include "select_hard_negatives_common.h"
#include "select_hard_negatives_cuda.h"

namespace dapo_fast {
namespace {

using namespace hard_negative_math;

template <typename T>
__global__ void select_kernel(const T* cos, const T* sim, T* scratch, int64_t* picked_all, int64_t* out,
                              int64_t batch, int64_t n, int64_t num, int mode) {
  const int64_t b = blockIdx.x, others = batch - 1, bn = batch * n, cands = others * n;
  T* diff = scratch + b * cands;
  T* uniq = scratch + (batch + b) * cands;
  T* max_cos = scratch + (2 * batch + b) * cands;
  int64_t* picked = picked_all + b * others;
  for (int64_t j = threadIdx.x; j < others; j += blockDim.x) {
    normalise_group(sim + b * bn + other_image(b, j) * n, n, /*negate=*/false, diff + j * n);
    for (int64_t i = 0; i < n; ++i) {
      uniq[j * n + i] = T(1);
      max_cos[j * n + i] = -INFINITY;
    }
  }
  __syncthreads();
  for (int64_t step = 0; step < num; ++step) {
    for (int64_t j = threadIdx.x; j < others; j += blockDim.x) {
      const int64_t best = pick_candidate(diff + j * n, uniq + j * n, n);
      out[(b * others + j) * num + step] = best;
      picked[j] = other_image(b, j) * n + best;
    }
    __syncthreads();
    for (int64_t c = threadIdx.x; c < cands; c += blockDim.x) {
      const int64_t id = other_image(b, c / n) * n + c % n;
      const T* row = cos + id * bn;
      if (mode == kPairwise) {
        T u = uniq[c];
        for (int64_t p = 0; p < others; ++p) {
          const T d = pair_distance(row[picked[p]], picked[p] == id);
          u = minimum(d, u);
        }
        uniq[c] = u;
      } else {
        T m = max_cos[c];
        for (int64_t p = 0; p < others; ++p) {
          const T v = pair_cos(row[picked[p]], picked[p] == id);
          m = maximum(v, m);
        }
        max_cos[c] = m;
      }
    }
    __syncthreads();
    if (mode == kPaper) {
      for (int64_t j = threadIdx.x; j < others; j += blockDim.x)
        normalise_group(max_cos + j * n, n, /*negate=*/true, uniq + j * n);
      __syncthreads();
    }
  }
}

}  // namespace

void select_hard_negatives_cuda_launch(bool is_double, const void* cos, const void* sim, void* scratch,
                                       int64_t* picked, int64_t* out, int64_t batch, int64_t n, int64_t num,
                                       int mode, void* stream) {
  if (batch <= 1 || num == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  const unsigned grid = grid_of(batch);
  if (is_double)
    select_kernel<double><<<grid, 128, 0, s>>>(
        static_cast<const double*>(cos), static_cast<const double*>(sim), static_cast<double*>(scratch), picked, out,
        batch, n, num, mode);
  else
    select_kernel<float><<<grid, 128, 0, s>>>(
        static_cast<const float*>(cos), static_cast<const float*>(sim), static_cast<float*>(scratch), picked, out,
        batch, n, num, mode);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace dapo_fast
