// Tensor glue of select_hard_negatives on CUDA: checks, the two cuBLAS products, scratch, launch.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "hard_negatives_checks.h"
#include "hard_negatives_cuda.h"

namespace dapo_fast {
namespace {

at::Tensor select_hard_negatives_cuda(const at::Tensor& queries, const at::Tensor& text, int64_t num,
                                      c10::string_view uniqueness) {
  const int mode = parse_uniqueness(std::string_view(uniqueness.data(), uniqueness.size()));
  check_hard_negative_args(queries, text, num);
  c10::cuda::CUDAGuard guard(queries.device());
  const int64_t b = queries.size(0), n = queries.size(1);
  at::Tensor out = at::empty({b, b > 0 ? b - 1 : 0, num}, queries.options().dtype(at::kLong));
  if (b <= 1 || num == 0) return out;
  const auto ct = queries.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  const at::Tensor q = queries.to(ct).reshape({b * n, queries.size(2)}).contiguous();
  const at::Tensor qn = q.div(q.norm(2, {-1}, true).clamp_min(1e-12));
  const at::Tensor cos = qn.mm(qn.t()).contiguous();
  const at::Tensor sim = text.to(ct).mm(q.t()).contiguous();
  at::Tensor scratch = at::empty({3 * b * (b - 1) * n}, q.options());
  at::Tensor picked = at::empty({b * (b - 1)}, out.options());
  select_hard_negatives_cuda_launch(ct == at::kDouble, cos.data_ptr(), sim.data_ptr(), scratch.data_ptr(),
                                    picked.data_ptr<int64_t>(), out.data_ptr<int64_t>(), b, n, num, mode,
                                    c10::cuda::getCurrentCUDAStream().stream());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) { m.impl("select_hard_negatives", &select_hard_negatives_cuda); }

}  // namespace dapo_fast
