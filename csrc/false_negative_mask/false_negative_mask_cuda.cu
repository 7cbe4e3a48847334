// false_negative_mask block kernel, CUDA: one block per image pair (i < a) of a product tile;
// threads own rows (out[a, i, k]) and columns (out[i, a, l]) of the K x K block. The product
// itself comes from cuBLAS (false_negative_mask_driver.h).
#include <cuda_runtime.h>

#include "../common/cuda_launch.cuh"
#include "false_negative_mask_common.h"
#include "false_negative_mask_cuda.h"

namespace dapo_fast {
namespace {

using namespace false_negative_math;

template <typename T>
__global__ void block_kernel(const T* dot, int64_t ld, const T* inv_norm, const uint8_t* valid, uint8_t* out,
                             int64_t batch, int64_t k, int64_t i0, int64_t ni, int64_t a0, int64_t na, T threshold) {
  const int64_t i = i0 + blockIdx.x / na, a = a0 + blockIdx.x % na;
  if (blockIdx.x >= ni * na || a <= i) return;
  const T* block = dot + (i - i0) * k * ld + (a - a0) * k;
  const T* inv_i = inv_norm + i * k;
  const T* inv_a = inv_norm + a * k;
  const uint8_t* valid_i = valid + i * k;
  const uint8_t* valid_a = valid + a * k;
  for (int64_t r = threadIdx.x; r < k; r += blockDim.x) {  // out[a, i, r]: OR over a's regions
    uint8_t hit = 0;
    if (valid_i[r])
      for (int64_t c = 0; c < k && !hit; ++c)
        hit = valid_a[c] && similar(block[r * ld + c], inv_i[r], inv_a[c], threshold);
    out[(a * batch + i) * k + r] = hit;
  }
  for (int64_t c = threadIdx.x; c < k; c += blockDim.x) {  // out[i, a, c]: OR over i's regions
    uint8_t hit = 0;
    if (valid_a[c])
      for (int64_t r = 0; r < k && !hit; ++r)
        hit = valid_i[r] && similar(block[r * ld + c], inv_i[r], inv_a[c], threshold);
    out[(i * batch + a) * k + c] = hit;
  }
}

}  // namespace

void false_negative_block_cuda_launch(bool is_double, const void* dot, int64_t ld, const void* inv_norm,
                                      const uint8_t* valid, uint8_t* out, int64_t batch, int64_t k, int64_t i0,
                                      int64_t ni, int64_t a0, int64_t na, double threshold, void* stream) {
  const unsigned grid = grid_of(ni * na);
  if (grid == 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (is_double)
    block_kernel<double><<<grid, 128, 0, s>>>(static_cast<const double*>(dot), ld,
                                              static_cast<const double*>(inv_norm), valid, out, batch, k, i0, ni, a0,
                                              na, threshold);
  else
    block_kernel<float><<<grid, 128, 0, s>>>(static_cast<const float*>(dot), ld, static_cast<const float*>(inv_norm),
                                             valid, out, batch, k, i0, ni, a0, na, static_cast<float>(threshold));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace dapo_fast
