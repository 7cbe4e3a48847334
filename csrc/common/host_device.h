// Marks functions shared by the CPU and CUDA kernels. nvcc sees __host__ __device__;
// the host compiler sees plain inline functions, so CPU tests exercise the CUDA math too.
#pragma once

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HOST_DEVICE inline
#endif

namespace dapo_fast {

// max / min written the same for nvcc and the host compiler. A NaN as `a` gives b; as `b`, NaN.
template <typename T>
HOST_DEVICE T max_of(T a, T b) { return a > b ? a : b; }
template <typename T>
HOST_DEVICE T min_of(T a, T b) { return a < b ? a : b; }

}  // namespace dapo_fast
