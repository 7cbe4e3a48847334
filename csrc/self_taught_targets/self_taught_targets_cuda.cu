// self_taught_targets CUDA kernel: one thread per (image, phrase); the math is
// self_taught_targets_common.h.
#include <cuda_runtime.h>

#include "../common/block_reduce.cuh"
#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "self_taught_targets_common.h"
#include "self_taught_targets_cuda.h"

namespace dapo_fast {
namespace {

template <typename scalar_t>
__global__ void self_taught_kernel(const scalar_t* boxes, const scalar_t* scores, scalar_t* deltas, scalar_t* weights,
                                   long long b, long long p, long long j, double iou_threshold, double score_gap,
                                   box_math::Weights wt) {
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
    const bool keep = k != best && self_taught_math::is_target(box, gt, to_acc(s[k]), best_score,
                                                               static_cast<acc_t>(iou_threshold),
                                                               static_cast<acc_t>(score_gap));
    if (keep) box_math::encode(box, gt, wt, d);
    store4(d, deltas + (bp * j + k) * 4);
    weights[bp * j + k] = from_acc<scalar_t>(acc_t(keep ? 1 : 0));
  }
}

}  // namespace

void self_taught_targets_cuda_launch(DType dtype, const void* boxes, const void* scores, void* deltas, void* weights,
                                     int64_t b, int64_t p, int64_t j, double iou_threshold, double score_gap,
                                     const box_math::Weights& box_weights, void* stream) {
  if (b * p * j == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    self_taught_kernel<T><<<grid_covering(b * p, kBlock), kBlock, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(boxes), static_cast<const T*>(scores), static_cast<T*>(deltas), static_cast<T*>(weights),
        b, p, j, iou_threshold, score_gap, box_weights);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
