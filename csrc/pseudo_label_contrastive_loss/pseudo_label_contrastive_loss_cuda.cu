// Row kernel of the fused pseudo-label loss, CUDA: one block per phrase row; block-wide
// max / sum reductions over the B*K columns, then the gradient coefficients in place.
// The logits come from cuBLAS (tiling in pseudo_label_contrastive_loss_driver.h).
#include <cuda_runtime.h>

#include <cmath>

#include "../common/cuda_launch.cuh"
#include "pseudo_label_contrastive_loss_common.h"
#include "pseudo_label_contrastive_loss_cuda.h"

namespace dapo_fast {
namespace {

using namespace pseudo_label_math;
constexpr int kThreads = 256;

template <typename T>
__device__ T block_reduce(T v, T* shared, bool is_max) {
  const int tid = threadIdx.x;
  shared[tid] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (tid < s) shared[tid] = is_max ? (shared[tid + s] > shared[tid] ? shared[tid + s] : shared[tid])
                                      : shared[tid] + shared[tid + s];
    __syncthreads();
  }
  const T r = shared[0];
  __syncthreads();
  return r;
}

template <typename T>
__device__ T exp_dev(T x) { return exp(x); }

template <typename T>
__global__ void rows_kernel(PseudoLabelRowArgs a) {
  __shared__ T shared[kThreads];
  const int64_t r = blockIdx.x;
  if (r >= a.rows) return;
  T* srow = static_cast<T*>(a.s) + r * a.s_cols;
  const T* trow = static_cast<const T*>(a.t) + r * a.t_cols;
  const uint8_t* ms = a.s_member + (r / a.num_q) * a.s_member_stride;
  const int64_t* t_column = a.t_column + (r / a.num_q) * a.t_cols;
  const uint8_t* mt = a.t_member + (r / a.num_q) * a.t_cols;
  const T inv_tau = static_cast<T>(a.inv_tau), inv_ttau = static_cast<T>(a.inv_teacher_tau);
  const T neg_inf = -INFINITY;
  // a row has a loss when its phrase is valid and its teacher set is not empty: counted, not read
  // off the logits, so NaN or -inf teacher logits give a NaN loss (as the softmax), not 0
  T v = 0;
  if (a.valid_row[r])
    for (int64_t j = threadIdx.x; j < a.t_cols; j += blockDim.x) v += mt[j] ? T(1) : T(0);
  const T members = block_reduce(v, shared, false);
  v = neg_inf;
  for (int64_t j = threadIdx.x; j < a.t_cols; j += blockDim.x)
    if (mt[j] && trow[j] > v) v = trow[j];
  const T tmax = block_reduce(v, shared, true);
  if (!(members > T(0))) {
    if (threadIdx.x == 0) static_cast<T*>(a.loss)[r] = 0;
    if (a.write_grad)
      for (int64_t j = threadIdx.x; j < a.s_cols; j += blockDim.x) srow[j] = 0;
    return;
  }
  const T tshift = tmax * inv_ttau;
  v = 0;
  for (int64_t j = threadIdx.x; j < a.t_cols; j += blockDim.x)
    if (mt[j]) v += exp_dev(trow[j] * inv_ttau - tshift);
  const T lse_t = tshift + log(block_reduce(v, shared, false));
  v = neg_inf;
  for (int64_t j = threadIdx.x; j < a.s_cols; j += blockDim.x)
    if (ms[j] && srow[j] > v) v = srow[j];
  const T sshift = block_reduce(v, shared, true) * inv_tau;
  v = 0;
  for (int64_t j = threadIdx.x; j < a.s_cols; j += blockDim.x)
    if (ms[j]) v += exp_dev(srow[j] * inv_tau - sshift);
  const T lse_s = sshift + log(block_reduce(v, shared, false));
  v = 0;
  for (int64_t j = threadIdx.x; j < a.t_cols; j += blockDim.x)
    if (mt[j]) v += exp_dev(trow[j] * inv_ttau - lse_t) * srow[t_column[j]] * inv_tau;
  const T dot = block_reduce(v, shared, false);
  if (threadIdx.x == 0) static_cast<T*>(a.loss)[r] = lse_s - dot;
  if (!a.write_grad) return;
  const T c = static_cast<const T*>(a.coef)[r] * inv_tau;
  // d loss / d s = (softmax_S * sum_T pi - pi) / tau: sum_T pi is 1, or NaN with lse_t
  const T c_softmax = c * (lse_t - lse_t + T(1));
  for (int64_t j = threadIdx.x; j < a.s_cols; j += blockDim.x)
    srow[j] = ms[j] ? c_softmax * exp_dev(srow[j] * inv_tau - lse_s) : T(0);
  __syncthreads();
  // T columns are distinct S columns: each thread owns its j
  for (int64_t j = threadIdx.x; j < a.t_cols; j += blockDim.x)
    if (mt[j]) srow[t_column[j]] -= c * exp_dev(trow[j] * inv_ttau - lse_t);
}

}  // namespace

void pseudo_label_rows_cuda_launch(const PseudoLabelRowArgs& args, void* stream) {
  if (args.rows == 0) return;
  const unsigned grid = grid_of(args.rows);
  if (args.is_double)
    rows_kernel<double><<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(args);
  else
    rows_kernel<float><<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(args);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace dapo_fast
