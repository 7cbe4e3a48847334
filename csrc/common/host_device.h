// Marks functions shared by the CPU and CUDA kernels. nvcc sees __host__ __device__;
// the host compiler sees plain inline functions, so CPU tests exercise the CUDA math too.
#pragma once

#if defined(__CUDACC__)
#define HOST_DEVICE __host__ __device__ __forceinline__
#else
#define HOST_DEVICE inline
#endif
