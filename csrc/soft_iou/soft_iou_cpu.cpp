// soft_iou CPU kernels. Parallel over images; per image the masks are staged once and their
// sums computed once. Backward: grad_r[s] = sum_p m_p * a[s, p] - sum_p c[s, p] (soft_iou_common.h),
// accumulated per map in a fixed proposal order (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

#include "../common/grain.h"
#include "../common/cpu_vec.h"
#include "../common/parallel.h"
#include "../common/proposal_masks_cpu.h"
#include "soft_iou_common.h"
#include "soft_iou_prepare.h"

namespace dapo_fast {
namespace {

using namespace soft_iou_math;

template <typename acc_t>
inline void axpy(int64_t n, acc_t a, const acc_t* x, acc_t* y) {
  cpu_vec::axpy(n, a, x, y);
}

template <typename scalar_t, typename mask_t>
void soft_iou_kernel(bool backward, const scalar_t* grad, const scalar_t* response, const mask_t* masks, int64_t b_count,
                     int64_t s_count, int64_t p_count, int64_t hw, int variant, double eps_d, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t eps = static_cast<acc_t>(eps_d);
  dapo_fast::parallel_for(0, b_count, grain_for((s_count + 1) * p_count * hw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> m, r, mask_sum, g;
    for (int64_t b = begin; b < end; ++b) {
      proposal_masks_cpu::stage_masks(masks + b * p_count * hw, static_cast<const bool*>(nullptr), p_count, hw, m);
      mask_sum.resize(p_count);
      for (int64_t p = 0; p < p_count; ++p) mask_sum[p] = cpu_vec::sum(m.data() + p * hw, hw);
      for (int64_t s = 0; s < s_count; ++s) {
        const int64_t bs = b * s_count + s;
        proposal_masks_cpu::stage_map(response + bs * hw, hw, r);
        const acc_t sum_r = cpu_vec::sum(r.data(), hw);
        if (!backward) {
          for (int64_t p = 0; p < p_count; ++p) {
            const acc_t inter = cpu_vec::dot(r.data(), m.data() + p * hw, hw);
            out[bs * p_count + p] =
                static_cast<scalar_t>(inter / soft_denominator(inter, sum_r, mask_sum[p], variant, eps));
          }
          continue;
        }
        g.assign(hw, acc_t(0));
        acc_t constant = 0;
        for (int64_t p = 0; p < p_count; ++p) {
          const acc_t gp = static_cast<acc_t>(grad[bs * p_count + p]);
          const acc_t inter = cpu_vec::dot(r.data(), m.data() + p * hw, hw);
          acc_t a, c;
          soft_iou_grad_coeffs(inter, soft_denominator(inter, sum_r, mask_sum[p], variant, eps), variant, a, c);
          axpy<acc_t>(hw, gp * a, m.data() + p * hw, g.data());
          constant += gp * c;
        }
        scalar_t* dst = out + bs * hw;
        for (int64_t i = 0; i < hw; ++i) dst[i] = static_cast<scalar_t>(g[i] - constant);
      }
    }
  });
}

void run(const SoftIou& p, bool backward) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.response.scalar_type(), "soft_iou_cpu", [&] {
    proposal_masks_cpu::dispatch_mask<scalar_t>(p.masks, [&](auto tag) {
      using mask_t = decltype(tag);
      soft_iou_kernel<scalar_t, mask_t>(backward, backward ? p.grad.data_ptr<scalar_t>() : nullptr,
                                        p.response.data_ptr<scalar_t>(), proposal_masks_cpu::mask_ptr<mask_t>(p.masks),
                                        p.n.b, p.n.s, p.n.p, p.n.hw, p.variant, p.eps, p.out.data_ptr<scalar_t>());
    });
  });
}

struct CpuKernels {
  static void forward(const SoftIou& p) { run(p, /*backward=*/false); }
  static void backward(const SoftIou& p) { run(p, /*backward=*/true); }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_soft_iou<CpuKernels>(m); }

}  // namespace dapo_fast
