// The one entry of resized_argmax, registered for CPU and CUDA alike (resized_argmax_entry<Kernels>):
// checks (the output sizes too, read on the host), contiguity, the output, then the device's
// kernel (Kernels::run, in resized_argmax_cpu.cpp and resized_argmax_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "../common/checks.h"

namespace dapo_fast {

inline void check_resized_argmax_args(const at::Tensor& heatmaps, const at::Tensor& sizes) {
  check_dim(heatmaps, 3, "heatmaps");
  check_floating(heatmaps, "heatmaps");
  TORCH_CHECK(sizes.dim() == 2 && sizes.size(1) == 2 && sizes.size(0) == heatmaps.size(0),
              "sizes must have shape [N, 2] (height, width) with N = heatmaps.size(0), got ", sizes.sizes());
  TORCH_CHECK(sizes.scalar_type() == at::kLong, "sizes must be int64, got ", sizes.scalar_type());
  check_same_device(heatmaps, "heatmaps", sizes, "sizes");
  TORCH_CHECK(heatmaps.numel() > 0 || heatmaps.size(0) == 0, "heatmaps must have a non-empty map size, got ",
              heatmaps.sizes());
}

struct ResizedArgmax {
  at::Tensor heatmaps;    // contiguous [N, H, W]
  at::Tensor sizes;       // contiguous int64 [N, 2] on the heatmaps' device
  at::Tensor host_sizes;  // the same on the CPU (sizes itself for CPU inputs)
  at::Tensor out;         // [N, 2] int64
  bool done = false;      // no map
};

inline ResizedArgmax prepare_resized_argmax(const at::Tensor& heatmaps, const at::Tensor& sizes) {
  check_resized_argmax_args(heatmaps, sizes);
  // the kernels index source and output rows / columns with int
  checked_int(heatmaps.size(1), "heatmaps height", 0);
  checked_int(heatmaps.size(2), "heatmaps width", 0);
  ResizedArgmax p;
  p.heatmaps = heatmaps.contiguous();
  p.sizes = sizes.contiguous();
  // checked on the host (a copy of N x 2 values for CUDA inputs) so an error names the map
  p.host_sizes = p.sizes.cpu();
  const int64_t n = heatmaps.size(0);
  const int64_t* hs = p.host_sizes.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(hs[2 * i] > 0 && hs[2 * i + 1] > 0, "sizes must be positive, got (", hs[2 * i], ", ", hs[2 * i + 1],
                ") for map ", i);
    TORCH_CHECK(hs[2 * i] <= kIntMax && hs[2 * i + 1] <= kIntMax, "sizes must be at most 2^31 - 1 (the kernels ",
                "index output rows and columns with a 32-bit int), got (", hs[2 * i], ", ", hs[2 * i + 1],
                ") for map ", i);
  }
  p.out = at::empty({n, 2}, heatmaps.options().dtype(at::kLong));
  p.done = n == 0;
  return p;
}

template <typename Kernels>
at::Tensor resized_argmax_entry(const at::Tensor& heatmaps, const at::Tensor& sizes) {
  const ResizedArgmax p = prepare_resized_argmax(heatmaps, sizes);
  if (!p.done) Kernels::run(p);
  return p.out;
}

// Registers the op with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_resized_argmax(torch::Library& m) {
  m.impl("resized_argmax", &resized_argmax_entry<Kernels>);
}

}  // namespace dapo_fast
