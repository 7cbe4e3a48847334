// The one entry of heatmap_to_box, registered for CPU and CUDA alike (heatmap_to_box_entry<Kernels>):
// checks (the same as the Python front's), contiguity, the output, then the device's kernel
// (Kernels::run, in heatmap_to_box_cpu.cpp and heatmap_to_box_cuda_impl.cpp). And the one entry of
// heatmap_to_box_wwbl, the same for every device (its kernel in heatmap_to_box_wwbl_cpu.cpp).
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

// protocol="wwbl": the maps on the CPU (WWbL's NMS keeps the first of equal confidences in the order
// torch's CPU sort leaves them, and so does the kernel, by calling that sort: CUDA maps are boxed on
// the host and the boxes copied back).
struct HeatmapToBoxWwbl {
  at::Tensor heatmaps;    // contiguous [N, H, W] on the CPU
  at::Tensor gray_table;  // contiguous uint8 [256] on the CPU
  at::Tensor out;         // [N, 4] float32 on the CPU
  double rel_threshold = 0, conf_threshold = 0, nms_threshold = 0;
  bool done = false;      // no map
};

inline HeatmapToBoxWwbl prepare_heatmap_to_box_wwbl(const at::Tensor& heatmaps, const at::Tensor& gray_table,
                                                    double rel_threshold, double conf_threshold,
                                                    double nms_threshold) {
  const HeatmapToBox plain = prepare_heatmap_to_box(heatmaps.cpu(), rel_threshold, conf_threshold, false);
  TORCH_CHECK(gray_table.scalar_type() == at::kByte && gray_table.dim() == 1 && gray_table.size(0) == 256,
              "gray_table must be a uint8 tensor of 256 entries, got ", gray_table.scalar_type(), " ",
              gray_table.sizes());
  TORCH_CHECK(nms_threshold >= 0.0, "nms_threshold must be >= 0, got ", nms_threshold);
  HeatmapToBoxWwbl p;
  p.heatmaps = plain.heatmaps;
  p.gray_table = gray_table.cpu().contiguous();
  p.out = plain.out;
  p.rel_threshold = rel_threshold;
  p.conf_threshold = conf_threshold;
  p.nms_threshold = nms_threshold;
  p.done = plain.done;
  return p;
}

// Fills p.out (heatmap_to_box_wwbl_cpu.cpp).
void heatmap_to_box_wwbl_boxes(const HeatmapToBoxWwbl& p);

inline at::Tensor heatmap_to_box_wwbl_entry(const at::Tensor& heatmaps, const at::Tensor& gray_table,
                                            double rel_threshold, double conf_threshold, double nms_threshold) {
  const HeatmapToBoxWwbl p =
      prepare_heatmap_to_box_wwbl(heatmaps, gray_table, rel_threshold, conf_threshold, nms_threshold);
  if (!p.done) heatmap_to_box_wwbl_boxes(p);
  return p.out.to(heatmaps.device());
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
  m.impl("heatmap_to_box_wwbl", &heatmap_to_box_wwbl_entry);
}

}  // namespace dapo_fast
