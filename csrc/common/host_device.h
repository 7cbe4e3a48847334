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

// torch.maximum / torch.minimum (and amax / amin as reductions): a NaN in either wins.
template <typename T>
HOST_DEVICE T maximum(T a, T b) { return (a > b || a != a) ? a : b; }
template <typename T>
HOST_DEVICE T minimum(T a, T b) { return (a < b || a != a) ? a : b; }

// Neither NaN nor +-inf (v - v is NaN exactly then); no <cmath>, so nvcc and the host agree.
template <typename T>
HOST_DEVICE bool is_finite(T v) { return v - v == v - v; }

// min(a, hi) with a NaN `a` passing through, as torch.clamp(a, max=hi) does.
template <typename T>
HOST_DEVICE T clamp_max(T a, T hi) { return a > hi ? hi : a; }

}  // namespace dapo_fast
