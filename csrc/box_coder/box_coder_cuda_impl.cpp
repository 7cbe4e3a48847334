// box_encode / box_decode on CUDA: the shared entries (box_coder_prepare.h) with the CUDA
// kernels' launches (device guard, stream), registration.
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "box_coder_cuda.h"
#include "box_coder_prepare.h"

namespace dapo_fast {
namespace {

struct CudaKernels {
  static void encode(const BoxPair& p) {
    c10::cuda::CUDAGuard guard(p.x.device());
    box_encode_cuda_launch(cuda_dtype(p.x), p.x.data_ptr(), p.y.data_ptr(), p.out.data_ptr(), p.x.size(0), p.weights,
                           current_cuda_stream());
  }

  static void encode_backward(const BoxPairBackward& p) {
    c10::cuda::CUDAGuard guard(p.x.device());
    box_encode_backward_cuda_launch(cuda_dtype(p.x), p.grad.data_ptr(), p.x.data_ptr(), p.y.data_ptr(),
                                    p.grad_x.data_ptr(), p.grad_y.data_ptr(), p.x.size(0), p.weights,
                                    current_cuda_stream());
  }

  static void decode(const BoxPair& p) {
    c10::cuda::CUDAGuard guard(p.x.device());
    box_decode_cuda_launch(cuda_dtype(p.x), p.x.data_ptr(), p.y.data_ptr(), p.out.data_ptr(), p.x.size(0), p.weights,
                           p.scale_clamp, current_cuda_stream());
  }

  static void decode_backward(const BoxPairBackward& p) {
    c10::cuda::CUDAGuard guard(p.x.device());
    box_decode_backward_cuda_launch(cuda_dtype(p.x), p.grad.data_ptr(), p.x.data_ptr(), p.y.data_ptr(),
                                    p.grad_x.data_ptr(), p.grad_y.data_ptr(), p.x.size(0), p.weights, p.scale_clamp,
                                    current_cuda_stream());
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_box_coder<CudaKernels>(m); }

}  // namespace dapo_fast
