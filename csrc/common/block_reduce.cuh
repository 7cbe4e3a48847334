// Block-wide reductions for 1-D thread blocks of kBlock threads (.cu files only). Tree order
// is fixed by the block size, so results do not depend on scheduling.
#pragma once

namespace dapo_fast {

constexpr int kBlock = 256;

template <typename T>
__device__ T block_sum(T v, T* shared) {
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  const T out = shared[0];
  __syncthreads();
  return out;
}

// (value, index) maximum; ties and NaN resolved by `better(v, i, best_v, best_i)`.
template <typename T, typename Better>
__device__ void block_argmax(T& v, long long& i, T* sv, long long* si, Better better) {
  sv[threadIdx.x] = v;
  si[threadIdx.x] = i;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride && better(sv[threadIdx.x + stride], si[threadIdx.x + stride], sv[threadIdx.x],
                                       si[threadIdx.x])) {
      sv[threadIdx.x] = sv[threadIdx.x + stride];
      si[threadIdx.x] = si[threadIdx.x + stride];
    }
    __syncthreads();
  }
  v = sv[0];
  i = si[0];
  __syncthreads();
}

}  // namespace dapo_fast
