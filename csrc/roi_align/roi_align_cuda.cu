// RoIAlign CUDA kernels: one thread per output element (forward) or per grad element
// (backward, atomics). Launch and indexing only; the math is roi_align_common.h.
#include <cuda_runtime.h>

#include "../common/cuda_dtype.cuh"
#include "../common/cuda_launch.cuh"
#include "roi_align_common.h"
#include "roi_align_cuda.h"

namespace dapo_fast {
namespace {

using namespace roi_align_math;

template <typename acc_t, typename scalar_t>
__device__ RoiGeometry<acc_t> load_geometry(const scalar_t* roi, const RoiAlignSizes& s) {
  acc_t r[5];
  for (int i = 0; i < 5; ++i) r[i] = to_acc(roi[i]);
  return roi_geometry<acc_t>(r, static_cast<acc_t>(s.spatial_scale), static_cast<int>(s.pooled_h),
                             static_cast<int>(s.pooled_w), s.sampling_ratio, s.aligned);
}

// Splits a flat output index into (roi, channel, ph, pw) for either memory layout.
__device__ void unravel(long long idx, const RoiAlignSizes& s, long long& k, long long& c, long long& ph,
                        long long& pw) {
  if (s.channels_last) {
    c = idx % s.channels;
    idx /= s.channels;
    pw = idx % s.pooled_w;
    idx /= s.pooled_w;
    ph = idx % s.pooled_h;
    k = idx / s.pooled_h;
  } else {
    pw = idx % s.pooled_w;
    idx /= s.pooled_w;
    ph = idx % s.pooled_h;
    idx /= s.pooled_h;
    c = idx % s.channels;
    k = idx / s.channels;
  }
}

__device__ long long pixel_offset(const RoiAlignSizes& s, long long n, long long c, long long y, long long x) {
  return s.channels_last ? ((n * s.height + y) * s.width + x) * s.channels + c
                         : ((n * s.channels + c) * s.height + y) * s.width + x;
}

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ input, const scalar_t* __restrict__ rois,
                               scalar_t* __restrict__ out, RoiAlignSizes s, long long total) {
  using acc_t = typename AccType<scalar_t>::type;
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    long long k, c, ph, pw;
    unravel(idx, s, k, c, ph, pw);
    const RoiGeometry<acc_t> g = load_geometry<acc_t>(rois + k * 5, s);
    const acc_t batch_value = to_acc(rois[k * 5]);
    if (!(batch_value > acc_t(-1) && batch_value < acc_t(s.batch))) {
      out[idx] = from_acc<scalar_t>(acc_t(NAN));
      continue;
    }
    acc_t sum = 0;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const AxisTaps<acc_t> ty = axis_taps(sample_coord(g.start_h, g.bin_h, (int)ph, iy, g.grid_h), (int)s.height);
      if (!ty.valid) continue;
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const AxisTaps<acc_t> tx = axis_taps(sample_coord(g.start_w, g.bin_w, (int)pw, ix, g.grid_w), (int)s.width);
        if (!tx.valid) continue;
        const acc_t top = tx.w_low * to_acc(input[pixel_offset(s, g.batch, c, ty.low, tx.low)]) +
                          tx.w_high * to_acc(input[pixel_offset(s, g.batch, c, ty.low, tx.high)]);
        const acc_t bottom = tx.w_low * to_acc(input[pixel_offset(s, g.batch, c, ty.high, tx.low)]) +
                             tx.w_high * to_acc(input[pixel_offset(s, g.batch, c, ty.high, tx.high)]);
        sum += ty.w_low * top + ty.w_high * bottom;
      }
    }
    out[idx] = from_acc<scalar_t>(sum * g.inv_count);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ rois,
                                acc_t* __restrict__ grad_input, RoiAlignSizes s, long long total) {
  for (long long idx = blockIdx.x * (long long)blockDim.x + threadIdx.x; idx < total;
       idx += (long long)blockDim.x * gridDim.x) {
    long long k, c, ph, pw;
    unravel(idx, s, k, c, ph, pw);
    const acc_t batch_value = to_acc(rois[k * 5]);
    if (!(batch_value > acc_t(-1) && batch_value < acc_t(s.batch))) continue;
    const RoiGeometry<acc_t> g = load_geometry<acc_t>(rois + k * 5, s);
    const acc_t gv = to_acc(grad[idx]) * g.inv_count;
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const AxisTaps<acc_t> ty = axis_taps(sample_coord(g.start_h, g.bin_h, (int)ph, iy, g.grid_h), (int)s.height);
      if (!ty.valid) continue;
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const AxisTaps<acc_t> tx = axis_taps(sample_coord(g.start_w, g.bin_w, (int)pw, ix, g.grid_w), (int)s.width);
        if (!tx.valid) continue;
        atomicAdd(grad_input + pixel_offset(s, g.batch, c, ty.low, tx.low), gv * ty.w_low * tx.w_low);
        atomicAdd(grad_input + pixel_offset(s, g.batch, c, ty.low, tx.high), gv * ty.w_low * tx.w_high);
        atomicAdd(grad_input + pixel_offset(s, g.batch, c, ty.high, tx.low), gv * ty.w_high * tx.w_low);
        atomicAdd(grad_input + pixel_offset(s, g.batch, c, ty.high, tx.high), gv * ty.w_high * tx.w_high);
      }
    }
  }
}

constexpr int kThreads = 256;

}  // namespace

void roi_align_forward_cuda_launch(DType dtype, const void* input, const void* rois, void* out,
                                   const RoiAlignSizes& s, void* stream) {
  const long long total = s.rois * s.channels * s.pooled_h * s.pooled_w;
  if (total == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    forward_kernel<scalar_t><<<blocks_for(total, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(input), static_cast<const scalar_t*>(rois), static_cast<scalar_t*>(out), s, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void roi_align_backward_cuda_launch(DType dtype, const void* grad, const void* rois, void* grad_input_acc,
                                    const RoiAlignSizes& s, void* stream) {
  const long long total = s.rois * s.channels * s.pooled_h * s.pooled_w;
  if (total == 0) return;
  dispatch_dtype(dtype, [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = typename AccType<scalar_t>::type;
    backward_kernel<scalar_t, acc_t><<<blocks_for(total, kThreads), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const scalar_t*>(grad), static_cast<const scalar_t*>(rois), static_cast<acc_t*>(grad_input_acc), s,
        total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace dapo_fast
