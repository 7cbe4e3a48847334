// soft_iou CPU kernels. Parallel over images; per image the masks are staged once and their
// sums computed once. Backward: grad_r[s] = sum_p m_p * a[s, p] - sum_p c[s, p] (pcnet_common.h),
// accumulated per map in a fixed proposal order (deterministic, no atomics).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <string>
#include <vector>

#include "../common/cpu_vec.h"
#include "pcnet_checks.h"
#include "pcnet_common.h"
#include "pcnet_cpu.h"

namespace dapo_fast {
namespace {

using namespace pcnet_math;

template <typename acc_t>
inline void axpy(int64_t n, acc_t a, const acc_t* x, acc_t* y) {
  cpu_vec::axpy(n, a, x, y);
}

template <typename scalar_t, typename mask_t>
void soft_iou_kernel(bool backward, const scalar_t* grad, const scalar_t* response, const mask_t* masks, int64_t b_count,
                     int64_t s_count, int64_t p_count, int64_t hw, int variant, double eps_d, scalar_t* out) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t eps = static_cast<acc_t>(eps_d);
  at::parallel_for(0, b_count, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> m, r, mask_sum, g;
    for (int64_t b = begin; b < end; ++b) {
      pcnet_cpu::stage_masks(masks + b * p_count * hw, static_cast<const bool*>(nullptr), p_count, hw, m);
      mask_sum.resize(p_count);
      for (int64_t p = 0; p < p_count; ++p) mask_sum[p] = pcnet_vec::sum(m.data() + p * hw, hw);
      for (int64_t s = 0; s < s_count; ++s) {
        const int64_t bs = b * s_count + s;
        pcnet_cpu::stage_map(response + bs * hw, hw, r);
        const acc_t sum_r = pcnet_vec::sum(r.data(), hw);
        if (!backward) {
          for (int64_t p = 0; p < p_count; ++p) {
            const acc_t inter = pcnet_vec::dot(r.data(), m.data() + p * hw, hw);
            out[bs * p_count + p] =
                static_cast<scalar_t>(inter / soft_denominator(inter, sum_r, mask_sum[p], variant, eps));
          }
          continue;
        }
        g.assign(hw, acc_t(0));
        acc_t constant = 0;
        for (int64_t p = 0; p < p_count; ++p) {
          const acc_t gp = static_cast<acc_t>(grad[bs * p_count + p]);
          const acc_t inter = pcnet_vec::dot(r.data(), m.data() + p * hw, hw);
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

at::Tensor run(const at::Tensor* grad_in, const at::Tensor& response_in, const at::Tensor& masks_in,
               c10::string_view variant_name, double eps) {
  check_pcnet_args(response_in, masks_in);
  const int variant = parse_variant(std::string(variant_name));
  const at::Tensor response = response_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const int64_t b = response.size(0), s = response.size(1), p = masks.size(1);
  const int64_t hw = response.size(2) * response.size(3);
  at::Tensor grad;
  if (grad_in != nullptr) {
    TORCH_CHECK(grad_in->dim() == 3 && grad_in->size(0) == b && grad_in->size(1) == s && grad_in->size(2) == p,
                "grad must have shape [B, S, P] = [", b, ", ", s, ", ", p, "], got ", grad_in->sizes());
    check_same_dtype(*grad_in, "grad", response, "response");
    grad = grad_in->contiguous();
  }
  at::Tensor out = grad_in == nullptr ? at::empty({b, s, p}, response.options()) : at::empty(response.sizes(), response.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, response.scalar_type(), "soft_iou_cpu", [&] {
    pcnet_cpu::dispatch_mask<scalar_t>(masks, [&](auto tag) {
      using mask_t = decltype(tag);
      soft_iou_kernel<scalar_t, mask_t>(grad_in != nullptr, grad_in == nullptr ? nullptr : grad.data_ptr<scalar_t>(),
                                        response.data_ptr<scalar_t>(), pcnet_cpu::mask_ptr<mask_t>(masks), b, s, p,
                                        hw, variant, eps, out.data_ptr<scalar_t>());
    });
  });
  return out;
}

at::Tensor soft_iou_cpu(const at::Tensor& response, const at::Tensor& masks, c10::string_view variant, double eps) {
  return run(nullptr, response, masks, variant, eps);
}

at::Tensor soft_iou_backward_cpu(const at::Tensor& grad, const at::Tensor& response, const at::Tensor& masks,
                                 c10::string_view variant, double eps) {
  return run(&grad, response, masks, variant, eps);
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("soft_iou", &soft_iou_cpu);
  m.impl("soft_iou_backward", &soft_iou_backward_cpu);
}

}  // namespace dapo_fast
