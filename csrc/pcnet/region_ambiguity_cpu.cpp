// region_ambiguity CPU kernel: forward and (with_grad) d ambiguity / d response in one pass.
//
// Parallel over images. Per image: stage its masks once, build the per-pixel top-2 of the valid
// masks (so "union of all valid masks but the foreground" is one lookup per pixel for any
// foreground), then per map: alignment scores -> foreground -> five sums -> ambiguity, and the
// gradient field J = -(m_fg * a_fg - c_fg) + (m_bg * a_bg - c_bg) (see pcnet_common.h). The
// backward is then grad_ambiguity * J, a broadcast multiply done by the autograd formula.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <vector>

#include "pcnet_checks.h"
#include "pcnet_common.h"
#include "pcnet_cpu.h"

namespace dapo_fast {
namespace {

using namespace pcnet_math;

template <typename scalar_t, typename mask_t>
void region_ambiguity_kernel(const scalar_t* response, const mask_t* masks, const bool* valid, int64_t b_count,
                             int64_t s_count, int64_t p_count, int64_t hw, int variant, double eps_d,
                             scalar_t* ambiguity, int64_t* foreground, scalar_t* grad_field) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t eps = static_cast<acc_t>(eps_d);
  at::parallel_for(0, b_count, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> m, r, max1, max2;
    std::vector<int> idx1;
    for (int64_t b = begin; b < end; ++b) {
      const bool* vb = valid + b * p_count;
      pcnet_cpu::stage_masks(masks + b * p_count * hw, vb, p_count, hw, m);
      max1.assign(hw, acc_t(0));
      max2.assign(hw, acc_t(0));
      idx1.assign(hw, -1);
      for (int64_t p = 0; p < p_count; ++p) {
        if (!vb[p]) continue;
        const acc_t* mp = m.data() + p * hw;
        for (int64_t i = 0; i < hw; ++i) top2_push(mp[i], static_cast<int>(p), max1[i], idx1[i], max2[i]);
      }
      for (int64_t s = 0; s < s_count; ++s) {
        const int64_t bs = b * s_count + s;
        pcnet_cpu::stage_map(response + bs * hw, hw, r);
        // foreground: highest alignment score among valid masks, lowest index on ties
        int fg = -1;
        acc_t best = -std::numeric_limits<acc_t>::infinity();
        for (int64_t p = 0; p < p_count; ++p) {
          if (!vb[p]) continue;
          const acc_t score = hw > 0 ? pcnet_vec::max_product(r.data(), m.data() + p * hw, hw) : acc_t(0);
          if (fg < 0 || score > best) best = score, fg = static_cast<int>(p);
        }
        const acc_t* mf = fg >= 0 ? m.data() + fg * hw : nullptr;
        acc_t sum_r = pcnet_vec::sum(r.data(), hw);
        acc_t inter_f = 0, sum_f = 0, inter_b = 0, sum_b = 0;
        if (mf != nullptr) {
          inter_f = pcnet_vec::dot(r.data(), mf, hw);
          sum_f = pcnet_vec::sum(mf, hw);
        }
        // background union at each pixel: the top value unless the foreground holds it
        acc_t part_ib[8] = {}, part_sb[8] = {};
        for (int64_t i = 0; i < hw; ++i) {
          const acc_t mb = idx1[i] == fg ? max2[i] : max1[i];
          part_ib[i & 7] += r[i] * mb;
          part_sb[i & 7] += mb;
        }
        for (int j = 0; j < 8; ++j) inter_b += part_ib[j], sum_b += part_sb[j];
        const acc_t den_f = soft_denominator(inter_f, sum_r, sum_f, variant, eps);
        const acc_t den_b = soft_denominator(inter_b, sum_r, sum_b, variant, eps);
        const acc_t iou_f = inter_f / den_f;
        const acc_t iou_b = inter_b / den_b;
        ambiguity[bs] = static_cast<scalar_t>(acc_t(1) - (iou_f - iou_b));
        foreground[bs] = fg;
        if (grad_field != nullptr) {
          acc_t a_f, c_f, a_b, c_b;
          soft_iou_grad_coeffs(inter_f, den_f, variant, a_f, c_f);
          soft_iou_grad_coeffs(inter_b, den_b, variant, a_b, c_b);
          const acc_t constant = c_f - c_b;
          scalar_t* g = grad_field + bs * hw;
          for (int64_t i = 0; i < hw; ++i) {
            const acc_t mb = idx1[i] == fg ? max2[i] : max1[i];
            const acc_t fgm = mf != nullptr ? mf[i] : acc_t(0);
            g[i] = static_cast<scalar_t>(mb * a_b - fgm * a_f + constant);
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> region_ambiguity_cpu(const at::Tensor& response_in,
                                                                    const at::Tensor& masks_in,
                                                                    const at::Tensor& valid_in,
                                                                    c10::string_view variant_name, double eps,
                                                                    bool with_grad) {
  check_pcnet_args(response_in, masks_in);
  check_mask_valid(response_in, masks_in, valid_in);
  const int variant = parse_variant(std::string(variant_name));
  const at::Tensor response = response_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const at::Tensor valid = valid_in.contiguous();
  const int64_t b = response.size(0), s = response.size(1), p = masks.size(1);
  const int64_t hw = response.size(2) * response.size(3);
  at::Tensor ambiguity = at::empty({b, s}, response.options());
  at::Tensor foreground = at::empty({b, s}, response.options().dtype(at::kLong));
  at::Tensor field = with_grad ? at::empty(response.sizes(), response.options()) : at::empty({0}, response.options());
  if (b * s == 0) return {ambiguity, foreground, field};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, response.scalar_type(), "region_ambiguity_cpu", [&] {
    pcnet_cpu::dispatch_mask<scalar_t>(masks, [&](auto tag) {
      using mask_t = decltype(tag);
      region_ambiguity_kernel<scalar_t, mask_t>(
          response.data_ptr<scalar_t>(), pcnet_cpu::mask_ptr<mask_t>(masks), valid.data_ptr<bool>(), b, s, p, hw,
          variant, eps, ambiguity.data_ptr<scalar_t>(), foreground.data_ptr<int64_t>(),
          with_grad ? field.data_ptr<scalar_t>() : nullptr);
    });
  });
  return {ambiguity, foreground, field};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { m.impl("region_ambiguity", &region_ambiguity_cpu); }

}  // namespace dapo_fast
