// Box-op CUDA kernels: one thread per output row (or pair, or (image, phrase)); the math is
// box_ops_common.h. The smooth-L1 sum is two deterministic passes (fixed chunks, then in order).
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "box_ops_common.h"
#include "box_ops_cuda.h"

namespace dapo_fast {
namespace {

using namespace box_math;
constexpr long long kChunk = 4096;

Weights make_weights(const double* w) { return Weights{w[0], w[1], w[2], w[3]}; }

template <typename acc_t, typename scalar_t>
__device__ __forceinline__ void load4(const scalar_t* p, acc_t* v) {
  for (int k = 0; k < 4; ++k) v[k] = static_cast<acc_t>(to_acc(p[k]));
}
template <typename acc_t, typename scalar_t>
__device__ __forceinline__ void store4(const acc_t* v, scalar_t* p) {
  for (int k = 0; k < 4; ++k) p[k] = from_acc<scalar_t>(v[k]);
}

template <typename scalar_t>
__global__ void iou_kernel(const scalar_t* a, const scalar_t* b, scalar_t* out, long long batch, long long n,
                           long long m) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (idx >= batch * n * m) return;
  const long long j = idx % m, row = idx / m, img = row / n;
  acc_t ra[4], rb[4];
  load4(a + row * 4, ra);
  load4(b + (img * m + j) * 4, rb);
  out[idx] = from_acc<scalar_t>(iou(ra, rb));
}

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

template <typename scalar_t>
__global__ void self_taught_kernel(const scalar_t* boxes, const scalar_t* scores, scalar_t* deltas, scalar_t* weights,
                                   long long b, long long p, long long j, double iou_threshold, double score_gap,
                                   Weights wt) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long bp = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (bp >= b * p) return;
  const long long img = bp / p;
  const scalar_t* s = scores + bp * j;
  const scalar_t* bx = boxes + img * j * 4;
  long long best = 0;
  for (long long k = 1; k < j; ++k) {
    const acc_t v = to_acc(s[k]), cur = to_acc(s[best]);
    if (cur != cur) break;
    if (v > cur || v != v) best = k;
  }
  acc_t gt[4];
  load4(bx + best * 4, gt);
  const acc_t best_score = to_acc(s[best]);
  for (long long k = 0; k < j; ++k) {
    acc_t box[4], d[4] = {0, 0, 0, 0};
    load4(bx + k * 4, box);
    const bool keep = k != best && iou(box, gt) >= static_cast<acc_t>(iou_threshold) &&
                      best_score - to_acc(s[k]) >= static_cast<acc_t>(score_gap);
    if (keep) encode(box, gt, wt, d);
    store4(d, deltas + (bp * j + k) * 4);
    weights[bp * j + k] = from_acc<scalar_t>(acc_t(keep ? 1 : 0));
  }
}

template <typename scalar_t>
__device__ double sl1_term(const scalar_t* x, const scalar_t* y, const scalar_t* w, long long i, double beta) {
  using acc_t = typename AccType<scalar_t>::type;
  return static_cast<double>(to_acc(w[i]) * smooth_l1(to_acc(x[i]) - to_acc(y[i]), static_cast<acc_t>(beta)));
}

template <typename scalar_t>
__global__ void sl1_none_kernel(const scalar_t* x, const scalar_t* y, const scalar_t* w, scalar_t* out, long long n,
                                double beta) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) out[i] = from_acc<scalar_t>(static_cast<typename AccType<scalar_t>::type>(sl1_term(x, y, w, i, beta)));
}

template <typename scalar_t>
__global__ void sl1_partial_kernel(const scalar_t* x, const scalar_t* y, const scalar_t* w, double* partials,
                                   long long n, double beta) {
  __shared__ double shared[kBlock];
  const long long start = blockIdx.x * kChunk;
  const long long stop = start + kChunk < n ? start + kChunk : n;
  double s = 0.0;
  for (long long i = start + threadIdx.x; i < stop; i += blockDim.x) s += sl1_term(x, y, w, i, beta);
  s = block_sum(s, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

template <typename scalar_t>
__global__ void sl1_finish_kernel(const double* partials, long long chunks, long long n, int reduction, scalar_t* out) {
  double total = 0.0;
  for (long long c = 0; c < chunks; ++c) total += partials[c];
  if (reduction == 2) total = n > 0 ? total / static_cast<double>(n) : 0.0 / 0.0;
  *out = from_acc<scalar_t>(static_cast<typename AccType<scalar_t>::type>(total));
}

template <typename scalar_t>
__global__ void sl1_backward_kernel(const scalar_t* g, const scalar_t* x, const scalar_t* y, const scalar_t* w,
                                    scalar_t* out, long long n, double beta, int reduction) {
  using acc_t = typename AccType<scalar_t>::type;
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  const acc_t scale = reduction == 2 ? acc_t(1) / static_cast<acc_t>(n) : acc_t(1);
  const acc_t gi = to_acc(reduction == 0 ? g[i] : g[0]) * scale;
  out[i] = from_acc<scalar_t>(gi * to_acc(w[i]) * smooth_l1_grad(to_acc(x[i]) - to_acc(y[i]), static_cast<acc_t>(beta)));
}

}  // namespace

#define DAPO_LAUNCH(total) blocks_for(total, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)

void box_iou_cuda_launch(DType dtype, const void* a, const void* b, void* out, int64_t batch, int64_t n, int64_t m,
                         void* stream) {
  const long long total = batch * n * m;
  if (total == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    iou_kernel<T><<<DAPO_LAUNCH(total)>>>(static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(out),
                                          batch, n, m);
  });
}

void box_encode_cuda_launch(DType dtype, const void* proposals, const void* targets, void* out, int64_t rows,
                            const double* weights, void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    encode_kernel<T><<<DAPO_LAUNCH(rows)>>>(static_cast<const T*>(proposals), static_cast<const T*>(targets),
                                            static_cast<T*>(out), rows, make_weights(weights));
  });
}

void box_encode_backward_cuda_launch(DType dtype, const void* grad, const void* proposals, const void* targets,
                                     void* grad_proposals, void* grad_targets, int64_t rows, const double* weights,
                                     void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    encode_backward_kernel<T><<<DAPO_LAUNCH(rows)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(proposals), static_cast<const T*>(targets),
        static_cast<T*>(grad_proposals), static_cast<T*>(grad_targets), rows, make_weights(weights));
  });
}

void box_decode_cuda_launch(DType dtype, const void* deltas, const void* boxes, void* out, int64_t rows,
                            const double* weights, double scale_clamp, void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    decode_kernel<T><<<DAPO_LAUNCH(rows)>>>(static_cast<const T*>(deltas), static_cast<const T*>(boxes),
                                            static_cast<T*>(out), rows, make_weights(weights), scale_clamp);
  });
}

void box_decode_backward_cuda_launch(DType dtype, const void* grad, const void* deltas, const void* boxes,
                                     void* grad_deltas, void* grad_boxes, int64_t rows, const double* weights,
                                     double scale_clamp, void* stream) {
  if (rows == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    decode_backward_kernel<T><<<DAPO_LAUNCH(rows)>>>(
        static_cast<const T*>(grad), static_cast<const T*>(deltas), static_cast<const T*>(boxes),
        static_cast<T*>(grad_deltas), static_cast<T*>(grad_boxes), rows, make_weights(weights), scale_clamp);
  });
}

void self_taught_targets_cuda_launch(DType dtype, const void* boxes, const void* scores, void* deltas, void* weights,
                                     int64_t b, int64_t p, int64_t j, double iou_threshold, double score_gap,
                                     const double* box_weights, void* stream) {
  if (b * p * j == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    self_taught_kernel<T><<<DAPO_LAUNCH(b * p)>>>(static_cast<const T*>(boxes), static_cast<const T*>(scores),
                                                  static_cast<T*>(deltas), static_cast<T*>(weights), b, p, j,
                                                  iou_threshold, score_gap, make_weights(box_weights));
  });
}

void weighted_smooth_l1_cuda_launch(DType dtype, const void* input, const void* target, const void* weight, void* out,
                                    double* partials, int64_t n, double beta, int reduction, void* stream) {
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    auto x = static_cast<const T*>(input), y = static_cast<const T*>(target), w = static_cast<const T*>(weight);
    if (reduction == 0) {
      if (n > 0) sl1_none_kernel<T><<<DAPO_LAUNCH(n)>>>(x, y, w, static_cast<T*>(out), n, beta);
      return;
    }
    const long long chunks = (n + kChunk - 1) / kChunk;
    if (chunks > 0)
      sl1_partial_kernel<T><<<(unsigned)chunks, kBlock, 0, static_cast<cudaStream_t>(stream)>>>(x, y, w, partials, n,
                                                                                              beta);
    sl1_finish_kernel<T><<<1, 1, 0, static_cast<cudaStream_t>(stream)>>>(partials, chunks, n, reduction,
                                                                         static_cast<T*>(out));
  });
}

void weighted_smooth_l1_backward_cuda_launch(DType dtype, const void* grad, const void* input, const void* target,
                                             const void* weight, void* out, int64_t n, double beta, int reduction,
                                             void* stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    sl1_backward_kernel<T><<<DAPO_LAUNCH(n)>>>(static_cast<const T*>(grad), static_cast<const T*>(input),
                                               static_cast<const T*>(target), static_cast<const T*>(weight),
                                               static_cast<T*>(out), n, beta, reduction);
  });
}

#undef DAPO_LAUNCH

}  // namespace dapo_fast
