// region_ambiguity on CUDA: the shared entry (region_ambiguity_prepare.h) with the CUDA kernel's
// launch (device guard, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "region_ambiguity_cuda.h"
#include "region_ambiguity_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void run(const RegionAmbiguity& p) {
    c10::cuda::CUDAGuard guard(p.response.device());
    region_ambiguity_cuda_launch(cuda_dtype(p.response), masks_are_bytes(p.masks), p.response.data_ptr(),
                                 p.masks.data_ptr(), p.valid.data_ptr<bool>(), p.ambiguity.data_ptr(),
                                 p.foreground.data_ptr<int64_t>(), p.with_grad ? p.field.data_ptr() : nullptr, p.n,
                                 p.variant, p.eps, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_region_ambiguity<CudaKernels>(m); }

}  // namespace dapo_fast
