// Raw-pointer launcher of the false_negative_mask block kernel (CUDA).
#pragma once
#include <cstdint>

namespace dapo_fast {

// dot: [ni*K, na*K] (row stride ld) product of tile I's regions with tile A's; writes
// out[i, a, :] and out[a, i, :] (bool bytes, [B, B, K]) for every image pair i < a of the tiles.
void false_negative_block_cuda_launch(bool is_double, const void* dot, int64_t ld, const void* inv_norm,
                                      const uint8_t* valid, uint8_t* out, int64_t batch, int64_t k, int64_t i0,
                                      int64_t ni, int64_t a0, int64_t na, double threshold, void* stream);

}  // namespace dapo_fast
