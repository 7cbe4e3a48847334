// box_encode / box_decode CUDA kernels: one thread per row; the math is box_coder_common.h.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "box_coder_common.h"
#include "box_coder_cuda.h"

namespace dapo_fast {
namespace {

using namespace box_math;

template <typename scalar_t>
__global__ void encode_kernel(const scalar_t* s, const scalar_t* t, scalar_t* out, long long rows, Weights wt) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  acc_t a[4], b[4], o[4];
  load4(s + 4 * r, a);
  load4(t + 4 * r, b);
  encode(a, b, wt, o);
  store4(o, out + 4 * r);
}

template <typename scalar_t>
__global__ void encode_backward_kernel(const scalar_t* g, const scalar_t* s, const scalar_t* t, scalar_t* gs,
                                       scalar_t* gt, long long rows, Weights wt) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  acc_t gg[4], a[4], b[4], oa[4], ob[4];
  load4(g + 4 * r, gg);
  load4(s + 4 * r, a);
  load4(t + 4 * r, b);
  encode_backward(gg, a, b, wt, oa, ob);
  store4(oa, gs + 4 * r);
  store4(ob, gt + 4 * r);
}

template <typename scalar_t>
__global__ void decode_kernel(const scalar_t* d, const scalar_t* b, scalar_t* out, long long rows, Weights wt,
                              double clamp) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  acc_t x[4], y[4], o[4];
  load4(d + 4 * r, x);
  load4(b + 4 * r, y);
  decode(x, y, wt, static_cast<acc_t>(clamp), o);
  store4(o, out + 4 * r);
}

template <typename scalar_t>
__global__ void decode_backward_kernel(const scalar_t* g, const scalar_t* d, const scalar_t* b, scalar_t* gd,
                                       scalar_t* gb, long long rows, Weights wt, double clamp) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (r >= rows) return;
  acc_t gg[4], x[4], y[4], ox[4], oy[4];
  load4(g + 4 * r, gg);
  load4(d + 4 * r, x);
  load4(b + 4 * r, y);
  decode_backward(gg, x, y, wt, static_cast<acc_t>(clamp), ox, oy);
  store4(ox, gd + 4 * r);
  store4(oy, gb + 4 * r);
}

}  // namespace

#define DAPO_LAUNCH(rows) grid_covering(rows, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)

void box_encode_cuda_launch(DType dtype, const void* proposals, const void* targets, void* out, int64_t rows,
                            const Weights& weights, void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    encode_kernel<T><<<DAPO_LAUNCH(rows)>>>(static_cast<const T*>(proposals), static_cast<const T*>(targets),
                                            static_cast<T*>(out), rows, weights);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void box_encode_backward_cuda_launch(DType dtype, const void* grad, const void* proposals, const void* targets,
                                     void* grad_proposals, void* grad_targets, int64_t rows, const Weights& weights,
                                     void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    encode_backward_kernel<T><<<DAPO_LAUNCH(rows)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(proposals), static_cast<const T*>(targets),
        static_cast<T*>(grad_proposals), static_cast<T*>(grad_targets), rows, weights);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void box_decode_cuda_launch(DType dtype, const void* deltas, const void* boxes, void* out, int64_t rows,
                            const Weights& weights, double scale_clamp, void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    decode_kernel<T><<<DAPO_LAUNCH(rows)>>>(static_cast<const T*>(deltas), static_cast<const T*>(boxes),
                                            static_cast<T*>(out), rows, weights, scale_clamp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void box_decode_backward_cuda_launch(DType dtype, const void* grad, const void* deltas, const void* boxes,
                                     void* grad_deltas, void* grad_boxes, int64_t rows, const Weights& weights,
                                     double scale_clamp, void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    decode_backward_kernel<T><<<DAPO_LAUNCH(rows)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(deltas), static_cast<const T*>(boxes),
        static_cast<T*>(grad_deltas), static_cast<T*>(grad_boxes), rows, weights, scale_clamp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

#undef DAPO_LAUNCH

}  // namespace dapo_fast
