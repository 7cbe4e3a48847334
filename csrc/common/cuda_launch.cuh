// Grid sizes and the launch-error check of the .cu launchers. Every kernel launch is followed
// by C10_CUDA_KERNEL_LAUNCH_CHECK(), so a bad configuration (too much shared memory, a grid
// past CUDA's limits) raises at the op instead of surfacing later in an unrelated call.
#pragma once
#include <c10/cuda/CUDAException.h>
#include <c10/util/Exception.h>

namespace dapo_fast {

// Blocks for a grid-stride loop over n items: capped, since every thread loops.
inline int blocks_for(long long n, int threads) {
  long long b = (n + threads - 1) / threads;
  return static_cast<int>(b < 65535LL * 16 ? (b > 0 ? b : 1) : 65535LL * 16);
}

// A grid of exactly `blocks` blocks (one block per item, or one thread per item for kernels
// without a grid-stride loop): refused past CUDA's grid limit rather than wrapped or cut short.
inline unsigned grid_of(long long blocks) {
  TORCH_CHECK(blocks >= 0 && blocks <= 2147483647LL, "the input needs ", blocks,
              " CUDA blocks, more than the grid limit 2^31 - 1");
  return static_cast<unsigned>(blocks);
}

// Blocks of `threads` threads covering n items with one thread each.
inline unsigned grid_covering(long long n, int threads) { return grid_of((n + threads - 1) / threads); }

}  // namespace dapo_fast
