// The one entry of heatmap_to_box, registered for CPU and CUDA alike (heatmap_to_box_entry<Kernels>):
// checks (the same as the Python front's), contiguity, the output, then the device's kernel
// (Kernels::run, in heatmap_to_box_cpu.cpp and heatmap_to_box_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/checks.h"

namespace dapo_fast {

struct HeatmapToBox {
  at::Tensor heatmaps;  // contiguous [N, H, W]
  at::Tensor out;       // [N, 4] float32
  double rel_threshold = 0, conf_threshold = 0;
  bool tozero = false;
  bool done = false;    // no map
};

inline HeatmapToBox prepare_heatmap_to_box(const at::Tensor& heatmaps, double rel_threshold, double conf_threshold,
                                           bool tozero) {
  check_dim(heatmaps, 3, "heatmaps");
  check_floating(heatmaps, "heatmaps");
  TORCH_CHECK(rel_threshold >= 0.0 && rel_threshold <= 1.0, "rel_threshold must be in [0, 1], got ", rel_threshold);
  TORCH_CHECK(conf_threshold >= 0.0, "conf_threshold must be >= 0, got ", conf_threshold);
  // pixels are indexed with int
  TORCH_CHECK(heatmaps.size(1) <= kIntMax && heatmaps.size(2) <= kIntMax &&
                  heatmaps.size(1) * heatmaps.size(2) < (int64_t(1) << 31),
              "heatmaps maps must have < 2^31 pixels");
  HeatmapToBox p;
  p.rel_threshold = rel_threshold;
  p.conf_threshold = conf_threshold;
  p.tozero = tozero;
  p.heatmaps = heatmaps.contiguous();
  const int64_t n = heatmaps.size(0);
  p.out = at::empty({n, 4}, heatmaps.options().dtype(at::kFloat));
  p.done = n == 0;
  if (!p.done) {
    TORCH_CHECK(heatmaps.size(1) > 0 && heatmaps.size(2) > 0, "heatmaps must have a non-empty map size, got ",
                heatmaps.sizes());
  }
  return p;
}

template <typename Kernels>
at::Tensor heatmap_to_box_entry(const at::Tensor& heatmaps, double rel_threshold, double conf_threshold,
                                bool tozero) {
  const HeatmapToBox p = prepare_heatmap_to_box(heatmaps, rel_threshold, conf_threshold, tozero);
  if (!p.done) Kernels::run(p);
  return p.out;
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_heatmap_to_box(torch::Library& m) {
  m.impl("heatmap_to_box", &heatmap_to_box_entry<Kernels>);
}

}  // namespace dapo_fast
