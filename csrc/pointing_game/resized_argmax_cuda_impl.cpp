// resized_argmax on CUDA: the shared entry (resized_argmax_prepare.h) with the CUDA kernel's
// launch (device guard, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "resized_argmax_cuda.h"
#include "resized_argmax_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void run(const ResizedArgmax& p) {
    const at::Tensor& heatmaps = p.heatmaps;
    c10::cuda::CUDAGuard guard(heatmaps.device());
    resized_argmax_cuda_launch(cuda_dtype(heatmaps), heatmaps.data_ptr(), p.sizes.data_ptr<int64_t>(),
                               p.out.data_ptr<int64_t>(), heatmaps.size(0), heatmaps.size(1), heatmaps.size(2),
                               current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_resized_argmax<CudaKernels>(m); }

}  // namespace dapo_fast
