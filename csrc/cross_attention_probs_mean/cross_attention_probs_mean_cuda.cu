// cross_attention_probs_mean CUDA kernels.
// Forward: one block per (batch, query row); heads in order; the row's T scores live in shared
// memory, the head-sum in a second shared row: nothing of size [B, heads, HW, T] is allocated.
// Backward: one block per (batch, head, row) recomputes the row's probabilities, writes ds and
// dq; a second kernel forms dk = ds^T q with one thread per (b, h, t, c): no atomics.
#include <cuda_runtime.h>

#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "../common/cuda_reduce.cuh"
#include "cross_attention_probs_mean_common.h"
#include "cross_attention_probs_mean_cuda.h"

namespace dapo_fast {
namespace {

constexpr int kThreads = 128;

// the CPU kernel's exp (shared header) for float, exp for double
__device__ __forceinline__ float exp_acc(float x) { return probs_mean_math::exp_nonpositive(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// Row i of head (b, h): p[0:T] = softmax(q_i . k_t * scale + bias_t). q_row in shared memory.
template <typename scalar_t, typename acc_t>
__device__ void row_probs(const scalar_t* __restrict__ k, const scalar_t* __restrict__ bias, const acc_t* q_row,
                          acc_t* p, acc_t* scratch, int64_t b, int64_t h, const ProbsMeanSizes& s) {
  const scalar_t* kbh = k + b * s.ks[0] + h * s.ks[1];
  acc_t local_max = -INFINITY;
  for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) {
    const scalar_t* kt = kbh + t * s.ks[2];
    acc_t dot = 0;
    for (int64_t c = 0; c < s.dim; ++c) dot += q_row[c] * to_acc(kt[c]);
    acc_t v = dot * static_cast<acc_t>(s.scale);
    if (bias != nullptr) v += to_acc(bias[b * s.keys + t]);
    p[t] = v;
    local_max = v > local_max ? v : local_max;
  }
  const acc_t m = block_max(local_max, scratch, static_cast<acc_t>(-INFINITY));
  acc_t local_sum = 0;
  for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) {
    const acc_t e = exp_acc(p[t] - m);
    p[t] = e;
    local_sum += e;
  }
  const acc_t inv = acc_t(1) / block_sum(local_sum, scratch);
  for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) p[t] *= inv;
  __syncthreads();
}

template <typename scalar_t, typename acc_t>
__device__ void load_q_row(const scalar_t* __restrict__ q, acc_t* q_row, int64_t b, int64_t h, int64_t i,
                           const ProbsMeanSizes& s) {
  const scalar_t* src = q + b * s.qs[0] + h * s.qs[1] + i * s.qs[2];
  __syncthreads();
  for (int64_t c = threadIdx.x; c < s.dim; c += blockDim.x) q_row[c] = to_acc(src[c]);
  __syncthreads();
}

template <typename scalar_t, typename acc_t>
__global__ void forward_kernel(const scalar_t* __restrict__ q, const scalar_t* __restrict__ k,
                               const scalar_t* __restrict__ bias, scalar_t* __restrict__ out, int64_t os0,
                               int64_t os1, int64_t os2, bool accumulate, ProbsMeanSizes s) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* smem = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* scratch = smem;                // 32
  acc_t* q_row = scratch + 32;          // dim
  acc_t* p = q_row + s.dim;             // keys
  acc_t* acc = p + s.keys;              // keys
  for (int64_t task = blockIdx.x; task < s.batch * s.rows; task += gridDim.x) {
    const int64_t b = task / s.rows, i = task % s.rows;
    for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) acc[t] = 0;
    for (int64_t h = 0; h < s.heads; ++h) {
      load_q_row(q, q_row, b, h, i, s);
      row_probs<scalar_t, acc_t>(k, bias, q_row, p, scratch, b, h, s);
      for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) acc[t] += p[t];
    }
    const acc_t w = static_cast<acc_t>(s.weight / static_cast<double>(s.heads));
    for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) {
      scalar_t* o = out + b * os0 + i * os1 + t * os2;
      const acc_t v = w * acc[t];
      *o = from_acc<scalar_t>(accumulate ? to_acc(*o) + v : v);
    }
    __syncthreads();
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_rows_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ q,
                                     const scalar_t* __restrict__ k, const scalar_t* __restrict__ bias,
                                     acc_t* __restrict__ ds_out, scalar_t* __restrict__ dq, ProbsMeanSizes s) {
  extern __shared__ unsigned char smem_raw[];
  acc_t* smem = reinterpret_cast<acc_t*>(smem_raw);
  acc_t* scratch = smem;
  acc_t* q_row = scratch + 32;
  acc_t* p = q_row + s.dim;
  const acc_t w = static_cast<acc_t>(s.weight / static_cast<double>(s.heads));
  for (int64_t task = blockIdx.x; task < s.batch * s.heads * s.rows; task += gridDim.x) {
    const int64_t i = task % s.rows, bh = task / s.rows, b = bh / s.heads, h = bh % s.heads;
    load_q_row(q, q_row, b, h, i, s);
    row_probs<scalar_t, acc_t>(k, bias, q_row, p, scratch, b, h, s);
    const scalar_t* g = grad + (b * s.rows + i) * s.keys;
    acc_t local = 0;
    for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) local += p[t] * w * to_acc(g[t]);
    const acc_t dot = block_sum(local, scratch);
    acc_t* ds = ds_out + task * s.keys;
    for (int64_t t = threadIdx.x; t < s.keys; t += blockDim.x) {
      const acc_t v = p[t] * (w * to_acc(g[t]) - dot) * static_cast<acc_t>(s.scale);
      p[t] = v;
      ds[t] = v;
    }
    __syncthreads();
    const scalar_t* kbh = k + b * s.ks[0] + h * s.ks[1];
    for (int64_t c = threadIdx.x; c < s.dim; c += blockDim.x) {
      acc_t sum = 0;
      for (int64_t t = 0; t < s.keys; ++t) sum += p[t] * to_acc(kbh[t * s.ks[2] + c]);
      dq[task * s.dim + c] = from_acc<scalar_t>(sum);
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_keys_kernel(const acc_t* __restrict__ ds, const scalar_t* __restrict__ q,
                                     scalar_t* __restrict__ dk, ProbsMeanSizes s) {
  const int64_t total = s.batch * s.heads * s.keys * s.dim;
  for (int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; idx < total;
       idx += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = idx % s.dim, t = (idx / s.dim) % s.keys, bh = idx / (s.dim * s.keys);
    const int64_t b = bh / s.heads, h = bh % s.heads;
    const scalar_t* qbh = q + b * s.qs[0] + h * s.qs[1];
    const acc_t* dsbh = ds + bh * s.rows * s.keys;
    acc_t sum = 0;
    for (int64_t i = 0; i < s.rows; ++i) sum += dsbh[i * s.keys + t] * to_acc(qbh[i * s.qs[2] + c]);
    dk[idx] = from_acc<scalar_t>(sum);
  }
}

int grid_for(int64_t tasks) {
  const int64_t cap = 65535LL * 16;
  return static_cast<int>(tasks < 1 ? 1 : (tasks < cap ? tasks : cap));
}

}  // namespace

void probs_mean_forward_cuda_launch(DType dtype, const void* q, const void* k, const void* bias, void* out,
                                    const int64_t* os, bool accumulate, const ProbsMeanSizes& s, void* stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename AccType<scalar_t>::type;
    const size_t smem = sizeof(acc_t) * (32 + s.dim + 2 * s.keys);
    forward_kernel<scalar_t, acc_t><<<grid_for(s.batch * s.rows), kThreads, smem, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(q), static_cast<const scalar_t*>(k), static_cast<const scalar_t*>(bias),
        static_cast<scalar_t*>(out), os[0], os[1], os[2], accumulate, s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void probs_mean_backward_cuda_launch(DType dtype, const void* grad, const void* q, const void* k, const void* bias,
                                     void* ds_workspace, void* dq, void* dk, const ProbsMeanSizes& s, void* stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename AccType<scalar_t>::type;
    const size_t smem = sizeof(acc_t) * (32 + s.dim + s.keys);
    auto st = static_cast<cudaStream_t>(stream);
    backward_rows_kernel<scalar_t, acc_t><<<grid_for(s.batch * s.heads * s.rows), kThreads, smem, st>>>(
        static_cast<const scalar_t*>(grad), static_cast<const scalar_t*>(q), static_cast<const scalar_t*>(k),
        static_cast<const scalar_t*>(bias), static_cast<acc_t*>(ds_workspace), static_cast<scalar_t*>(dq), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t total = s.batch * s.heads * s.keys * s.dim;
    backward_keys_kernel<scalar_t, acc_t><<<blocks_for(total, 256), 256, 0, st>>>(
        static_cast<const acc_t*>(ds_workspace), static_cast<const scalar_t*>(q), static_cast<scalar_t*>(dk), s);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
