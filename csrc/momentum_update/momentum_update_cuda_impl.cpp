// The multi-tensor EMA on CUDA: the shared entry (momentum_update_prepare.h), then the chunk and
// pointer tables built on the host, copied to the device once, and one kernel per dtype present.
#include <ATen/core/Tensor.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <map>
#include <vector>

#include "../common/cuda_glue.h"
#include "momentum_update_cuda.h"
#include "momentum_update_prepare.h"

namespace dapo_fast {
namespace {

constexpr int64_t kChunk = 1 << 16;

struct CudaKernels {
  static void run(at::TensorList teacher, const MomentumUpdate& p);
};

void CudaKernels::run(at::TensorList teacher, const MomentumUpdate& p) {
  c10::cuda::CUDAGuard guard(teacher[0].device());
  std::map<int, std::vector<int64_t>> chunks_by_dtype, pointers_by_dtype;
  for (size_t i = 0; i < teacher.size(); ++i) {
    if (!p.students[i].defined()) continue;
    const at::Tensor& t = teacher[i];
    const int key = static_cast<int>(cuda_dtype(t));
    auto& pointers = pointers_by_dtype[key];
    auto& chunks = chunks_by_dtype[key];
    const int64_t index = static_cast<int64_t>(pointers.size() / 2);
    pointers.push_back(reinterpret_cast<int64_t>(t.data_ptr()));
    pointers.push_back(reinterpret_cast<int64_t>(p.students[i].data_ptr()));
    for (int64_t b = 0; b < t.numel(); b += kChunk) {
      chunks.push_back(index);
      chunks.push_back(b);
      chunks.push_back(std::min(t.numel(), b + kChunk));
    }
  }
  const auto device_long = teacher[0].options().dtype(at::kLong);
  for (auto& [key, chunks] : chunks_by_dtype) {
    auto& pointers = pointers_by_dtype[key];
    const at::Tensor chunk_table = at::from_blob(chunks.data(), {static_cast<int64_t>(chunks.size())}, at::kLong)
                                       .to(device_long);
    const at::Tensor pointer_table =
        at::from_blob(pointers.data(), {static_cast<int64_t>(pointers.size())}, at::kLong).to(device_long);
    momentum_update_cuda_launch(static_cast<DType>(key), chunk_table.data_ptr<int64_t>(),
                                static_cast<int64_t>(chunks.size() / 3), pointer_table.data_ptr<int64_t>(), p.momentum,
                                current_cuda_stream());
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { register_momentum_update<CudaKernels>(m); }

}  // namespace dapo_fast
