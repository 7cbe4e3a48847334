// heatmap_to_box on CUDA: the shared entry (heatmap_to_box_prepare.h) with the CUDA kernel's
// launch (device guard, scratch, stream), registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "heatmap_to_box_cuda.h"
#include "heatmap_to_box_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void run(const HeatmapToBox& p) {
    const at::Tensor& heatmaps = p.heatmaps;
    c10::cuda::CUDAGuard guard(heatmaps.device());
    const int64_t n = heatmaps.size(0), h = heatmaps.size(1), w = heatmaps.size(2);
    at::Tensor labels = at::empty({n, h * w}, heatmaps.options().dtype(at::kInt));
    at::Tensor boxes = at::empty({n, 4, h * w}, heatmaps.options().dtype(at::kInt));
    at::Tensor conf = at::empty({n, h * w}, heatmaps.options().dtype(at::kDouble));
    heatmap_to_box_cuda_launch(cuda_dtype(heatmaps), heatmaps.data_ptr(), labels.data_ptr<int32_t>(),
                               boxes.data_ptr<int32_t>(), conf.data_ptr<double>(), p.out.data_ptr<float>(), n, h, w,
                               p.rel_threshold, p.conf_threshold, p.tozero, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_heatmap_to_box<CudaKernels>(m); }

}  // namespace dapo_fast
