// box_iou CPU kernel: [B, N, 4] x [B, M, 4] -> [B, N, M], parallel over (image, row of a).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "box_ops_checks.h"

namespace dapo_fast {
namespace {

at::Tensor box_iou_cpu(const at::Tensor& a_in, const at::Tensor& b_in) {
  check_floating(a_in, "a");
  TORCH_CHECK(a_in.dim() == 3 && a_in.size(2) == 4, "a must have shape [B, N, 4], got ", a_in.sizes());
  TORCH_CHECK(b_in.dim() == 3 && b_in.size(2) == 4 && b_in.size(0) == a_in.size(0),
              "b must have shape [B, M, 4] with B = a.size(0), got ", b_in.sizes());
  check_same_dtype(a_in, "a", b_in, "b");
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t batch = a.size(0), n = a.size(1), m = b.size(1);
  at::Tensor out = at::empty({batch, n, m}, a.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "box_iou_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t* pa = a.data_ptr<scalar_t>();
    const scalar_t* pb = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    at::parallel_for(0, batch * n, 64, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t img = row / n;
        acc_t ra[4];
        for (int k = 0; k < 4; ++k) ra[k] = static_cast<acc_t>(pa[row * 4 + k]);
        for (int64_t j = 0; j < m; ++j) {
          acc_t rb[4];
          for (int k = 0; k < 4; ++k) rb[k] = static_cast<acc_t>(pb[(img * m + j) * 4 + k]);
          po[row * m + j] = static_cast<scalar_t>(box_math::iou(ra, rb));
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { m.impl("box_iou", &box_iou_cpu); }

}  // namespace dapo_fast
