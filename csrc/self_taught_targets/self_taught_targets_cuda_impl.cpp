// self_taught_targets on CUDA: the shared entry (self_taught_targets_prepare.h) with the CUDA
// kernel's launch (device guard, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "self_taught_targets_cuda.h"
#include "self_taught_targets_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void run(const SelfTaughtTargets& p) {
    c10::cuda::CUDAGuard guard(p.boxes.device());
    self_taught_targets_cuda_launch(cuda_dtype(p.boxes), p.boxes.data_ptr(), p.scores.data_ptr(), p.deltas.data_ptr(),
                                    p.target_weights.data_ptr(), p.boxes.size(0), p.scores.size(1), p.boxes.size(1),
                                    p.iou_threshold, p.score_gap, p.weights, current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_self_taught_targets<CudaKernels>(m); }

}  // namespace dapo_fast
