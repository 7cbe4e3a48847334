// heatmap_to_box CUDA kernel: one block per map.
// Labels by min-index propagation over 8-neighbours until nothing changes (each pixel ends with
// the smallest pixel index of its component, the same partition as the CPU union-find), boxes by
// atomic min/max into the root's slot, confidences summed per root over its box in double (the
// CPU kernel's order), then block reductions for the best confidence and the union box.
#include <cuda_runtime.h>

#include <climits>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "heatmap_to_box_common.h"
#include "heatmap_to_box_cuda.h"

namespace dapo_fast {
namespace {

using namespace heatmap_to_box_math;

struct MaxDouble {
  __device__ bool operator()(double v, long long i, double best, long long best_i) const {
    return i >= 0 && (best_i < 0 || v > best);
  }
};

template <typename scalar_t>
__global__ void heatmap_to_box_kernel(const scalar_t* __restrict__ maps, int* __restrict__ labels_all,
                                      int* __restrict__ boxes_all, double* __restrict__ conf_all,
                                      float* __restrict__ out, int h, int w, double rel, double conf_thr,
                                      bool tozero) {
  __shared__ double s_lo[kBlock], s_hi[kBlock];
  __shared__ long long s_i[kBlock];
  __shared__ int s_flag;
  const long long n = blockIdx.x;
  const int hw = h * w;
  const scalar_t* src = maps + n * (long long)hw;
  int* label = labels_all + n * (long long)hw;
  int* bx0 = boxes_all + n * 4LL * hw;
  int* by0 = bx0 + hw;
  int* bx1 = by0 + hw;
  int* by1 = bx1 + hw;
  double* conf = conf_all + n * (long long)hw;

  // min / max (and NaN or +-inf, which make the box NaN)
  double lo = 1.0 / 0.0, hi = -1.0 / 0.0;
  int non_finite = 0;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    const double v = (double)to_acc(src[i]);
    if (!is_finite(v)) non_finite = 1;
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
  }
  if (threadIdx.x == 0) s_flag = 0;
  __syncthreads();
  if (non_finite) atomicOr(&s_flag, 1);
  s_lo[threadIdx.x] = lo;
  s_hi[threadIdx.x] = hi;
  __syncthreads();
  for (int stride = kBlock / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      s_lo[threadIdx.x] = s_lo[threadIdx.x + stride] < s_lo[threadIdx.x] ? s_lo[threadIdx.x + stride] : s_lo[threadIdx.x];
      s_hi[threadIdx.x] = s_hi[threadIdx.x + stride] > s_hi[threadIdx.x] ? s_hi[threadIdx.x + stride] : s_hi[threadIdx.x];
    }
    __syncthreads();
  }
  lo = s_lo[0];
  hi = s_hi[0];
  const bool has_non_finite = s_flag != 0;
  __syncthreads();
  if (has_non_finite) {
    if (threadIdx.x < 4) out[n * 4 + threadIdx.x] = __int_as_float(0x7fc00000);
    return;
  }
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    label[i] = normalise((double)to_acc(src[i]), lo, hi) >= rel ? i : -1;
    bx0[i] = INT_MAX, by0[i] = INT_MAX, bx1[i] = -1, by1[i] = -1;
  }
  __syncthreads();
  // min-label propagation; labels only decrease, so in-place updates converge to the same fixpoint
  while (true) {
    if (threadIdx.x == 0) s_flag = 0;
    __syncthreads();
    int changed = 0;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) {
      int best = label[i];
      if (best < 0) continue;
      const int y = i / w, x = i % w;
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          const int l = label[yy * w + xx];
          if (l >= 0 && l < best) best = l;
        }
      }
      if (best < label[i]) label[i] = best, changed = 1;
    }
    if (changed) atomicOr(&s_flag, 1);
    __syncthreads();
    const int any = s_flag;
    __syncthreads();
    if (!any) break;
  }
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    const int l = label[i];
    if (l < 0) continue;
    const int y = i / w, x = i % w;
    atomicMin(bx0 + l, x);
    atomicMin(by0 + l, y);
    atomicMax(bx1 + l, x + 1);
    atomicMax(by1 + l, y + 1);
  }
  __syncthreads();
  double best = 0.0;
  long long best_i = -1;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    if (label[i] != i) continue;  // roots only: one per component
    double sum = 0.0;
    for (int y = by0[i]; y < by1[i]; ++y)
      for (int x = bx0[i]; x < bx1[i]; ++x)
        sum += pixel_score(normalise((double)to_acc(src[y * w + x]), lo, hi), rel, tozero);
    conf[i] = sum / (double)((bx1[i] - bx0[i]) * (by1[i] - by0[i]));
    if (MaxDouble()(conf[i], i, best, best_i)) best = conf[i], best_i = i;
  }
  block_argmax(best, best_i, s_lo, s_i, MaxDouble());
  if (best_i < 0) {
    if (threadIdx.x < 4) out[n * 4 + threadIdx.x] = __int_as_float(0x7fc00000);
    return;
  }
  int ux0 = INT_MAX, uy0 = INT_MAX, ux1 = -1, uy1 = -1;
  for (int i = threadIdx.x; i < hw; i += blockDim.x) {
    if (label[i] != i || !keep_component(conf[i], best, conf_thr)) continue;
    ux0 = min(ux0, bx0[i]), uy0 = min(uy0, by0[i]), ux1 = max(ux1, bx1[i]), uy1 = max(uy1, by1[i]);
  }
  __shared__ int s_box[4];
  if (threadIdx.x == 0) s_box[0] = INT_MAX, s_box[1] = INT_MAX, s_box[2] = -1, s_box[3] = -1;
  __syncthreads();
  atomicMin(s_box + 0, ux0);
  atomicMin(s_box + 1, uy0);
  atomicMax(s_box + 2, ux1);
  atomicMax(s_box + 3, uy1);
  __syncthreads();
  if (threadIdx.x < 4) out[n * 4 + threadIdx.x] = (float)s_box[threadIdx.x];
}

}  // namespace

void heatmap_to_box_cuda_launch(DType dtype, const void* heatmaps, int32_t* labels, int32_t* boxes, double* conf,
                                float* out, int64_t n, int64_t h, int64_t w, double rel_threshold,
                                double conf_threshold, bool tozero, void* stream) {
  if (n == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    heatmap_to_box_kernel<scalar_t><<<grid_of(n), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(heatmaps), labels, boxes, conf, out, (int)h, (int)w, rel_threshold,
        conf_threshold, tozero);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
