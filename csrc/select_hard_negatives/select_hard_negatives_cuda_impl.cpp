// select_hard_negatives on CUDA: the shared entry (select_hard_negatives_prepare.h, with the two
// cuBLAS products) and the CUDA selection kernel's launch (device guard, scratch, stream),
// registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "select_hard_negatives_cuda.h"
#include "select_hard_negatives_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void run(const HardNegatives& p) {
    c10::cuda::CUDAGuard guard(p.cos.device());
    const int64_t b = p.batch, n = p.queries;
    at::Tensor scratch = at::empty({3 * b * (b - 1) * n}, p.cos.options());
    at::Tensor picked = at::empty({b * (b - 1)}, p.out.options());
    select_hard_negatives_cuda_launch(p.cos.scalar_type() == at::kDouble, p.cos.data_ptr(), p.sim.data_ptr(),
                                      scratch.data_ptr(), picked.data_ptr<int64_t>(), p.out.data_ptr<int64_t>(), b, n,
                                      p.num, p.mode, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_select_hard_negatives<CudaKernels>(m); }

}  // namespace dapo_fast
