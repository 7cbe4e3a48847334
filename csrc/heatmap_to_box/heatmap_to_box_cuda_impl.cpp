// Tensor glue of the heatmap_to_box CUDA kernel: checks, scratch, stream, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/checks.h"
#include "../common/cuda_glue.h"
#include "heatmap_to_box_cuda.h"

namespace dapo_fast {
namespace {

at::Tensor heatmap_to_box_cuda(const at::Tensor& heatmaps_in, double rel_threshold, double conf_threshold,
                               bool tozero) {
  check_dim(heatmaps_in, 3, "heatmaps");
  check_floating(heatmaps_in, "heatmaps");
  TORCH_CHECK(heatmaps_in.size(1) * heatmaps_in.size(2) < (int64_t(1) << 31), "heatmaps maps must have < 2^31 pixels");
  c10::cuda::CUDAGuard guard(heatmaps_in.device());
  const at::Tensor heatmaps = heatmaps_in.contiguous();
  const int64_t n = heatmaps.size(0), h = heatmaps.size(1), w = heatmaps.size(2);
  at::Tensor out = at::empty({n, 4}, heatmaps.options().dtype(at::kFloat));
  if (n == 0) return out;
  TORCH_CHECK(h > 0 && w > 0, "heatmaps must have a non-empty map size, got ", heatmaps.sizes());
  at::Tensor labels = at::empty({n, h * w}, heatmaps.options().dtype(at::kInt));
  at::Tensor boxes = at::empty({n, 4, h * w}, heatmaps.options().dtype(at::kInt));
  at::Tensor conf = at::empty({n, h * w}, heatmaps.options().dtype(at::kDouble));
  heatmap_to_box_cuda_launch(cuda_dtype(heatmaps), heatmaps.data_ptr(), labels.data_ptr<int32_t>(),
                             boxes.data_ptr<int32_t>(), conf.data_ptr<double>(), out.data_ptr<float>(), n, h, w,
                             rel_threshold, conf_threshold, tozero, c10::cuda::getCurrentCUDAStream().stream());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { m.impl("heatmap_to_box", &heatmap_to_box_cuda); }

}  // namespace dapo_fast
