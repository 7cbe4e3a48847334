// The proposal_alignment ops on CUDA: the shared entries (proposal_alignment_prepare.h) with the
// CUDA kernels' launches (device guard, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "proposal_alignment_cuda.h"
#include "proposal_alignment_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static constexpr bool kBackwardAddsIntoZeros = true;

  static void forward(const ProposalAlignment& p) {
    c10::cuda::CUDAGuard guard(p.response.device());
    proposal_alignment_cuda_launch(cuda_dtype(p.response), masks_are_bytes(p.masks), p.response.data_ptr(),
                                   p.masks.data_ptr(), p.valid.data_ptr<bool>(), p.scores.data_ptr(),
                                   p.argmax.data_ptr<int64_t>(), p.n, current_cuda_stream());
  }

  static void backward(const ProposalAlignmentBackward& p) {
    c10::cuda::CUDAGuard guard(p.grad.device());
    proposal_alignment_backward_cuda_launch(cuda_dtype(p.grad), masks_are_bytes(p.masks), p.grad.data_ptr(),
                                            p.argmax.data_ptr<int64_t>(), p.masks.data_ptr(), p.out.data_ptr(), p.n,
                                            current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_proposal_alignment<CudaKernels>(m); }

}  // namespace dapo_fast
