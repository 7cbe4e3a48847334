// box_iou CPU kernel: [B, N, 4] x [B, M, 4] -> [B, N, M], parallel over (image, row of a).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "box_iou_common.h"
#include "box_iou_prepare.h"

namespace dapo_fast {
namespace {

struct CpuKernels {
  static void run(const BoxIou& p) {
    const at::Tensor &a = p.a, &b = p.b;
    const int64_t batch = a.size(0), n = a.size(1), m = b.size(1);
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "box_iou_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t* pa = a.data_ptr<scalar_t>();
      const scalar_t* pb = b.data_ptr<scalar_t>();
      scalar_t* po = p.out.data_ptr<scalar_t>();
      dapo_fast::parallel_for(0, batch * n, grain_for(20 * m), [&](int64_t begin, int64_t end) {
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
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_box_iou<CpuKernels>(m); }

}  // namespace dapo_fast
