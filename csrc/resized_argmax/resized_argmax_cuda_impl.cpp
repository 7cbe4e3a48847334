// Tensor glue of the resized_argmax CUDA kernel: checks, allocation, stream, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "resized_argmax_checks.h"
#include "resized_argmax_cuda.h"

namespace dapo_fast {
namespace {

at::Tensor resized_argmax_cuda(const at::Tensor& heatmaps_in, const at::Tensor& sizes_in, bool align_corners) {
  check_resized_argmax_args(heatmaps_in, sizes_in);
  c10::cuda::CUDAGuard guard(heatmaps_in.device());
  const at::Tensor heatmaps = heatmaps_in.contiguous();
  const at::Tensor sizes = sizes_in.contiguous();
  const int64_t n = heatmaps.size(0);
  TORCH_CHECK(n == 0 || (heatmaps.size(1) > 0 && heatmaps.size(2) > 0), "heatmaps must have a non-empty map size");
  // sizes must be positive; checked on the host copy (tiny) so an error names the map
  const at::Tensor host_sizes = sizes.cpu();
  const int64_t* hs = host_sizes.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    TORCH_CHECK(hs[2 * i] > 0 && hs[2 * i + 1] > 0, "sizes must be positive, got (", hs[2 * i], ", ", hs[2 * i + 1],
                ") for map ", i);
  at::Tensor out = at::empty({n, 2}, heatmaps.options().dtype(at::kLong));
  resized_argmax_cuda_launch(cuda_dtype(heatmaps), heatmaps.data_ptr(), sizes.data_ptr<int64_t>(),
                             out.data_ptr<int64_t>(), n, heatmaps.size(1), heatmaps.size(2), align_corners,
                             c10::cuda::getCurrentCUDAStream().stream());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { m.impl("resized_argmax", &resized_argmax_cuda); }

}  // namespace dapo_fast
