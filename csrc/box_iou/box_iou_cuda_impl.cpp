// box_iou on CUDA: the shared entry (box_iou_prepare.h) with the CUDA kernel's launch (device
// guard, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "box_iou_cuda.h"
#include "box_iou_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void run(const BoxIou& p) {
    c10::cuda::CUDAGuard guard(p.a.device());
    box_iou_cuda_launch(cuda_dtype(p.a), p.a.data_ptr(), p.b.data_ptr(), p.out.data_ptr(), p.a.size(0), p.a.size(1),
                        p.b.size(1), current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_box_iou<CudaKernels>(m); }

}  // namespace dapo_fast
