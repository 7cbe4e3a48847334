// region_ambiguity CPU kernel: forward and (with_grad) d ambiguity / d response in one pass.
//
// Parallel over images. Per image: stage its masks once, build the per-pixel top-2 of the valid
// masks (so "union of all valid masks but the foreground" is one lookup per pixel for any
// foreground), then per map: alignment scores -> foreground -> five sums -> ambiguity, and the
// gradient field J (region_ambiguity_common.h). The backward is then grad_ambiguity * J, a
// broadcast multiply done by the autograd formula.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "../common/grain.h"
#include "../common/cpu_clones.h"
#include "../common/parallel.h"
#include "../common/proposal_masks_cpu.h"
#include "../proposal_alignment/proposal_alignment_common.h"
#include "region_ambiguity_common.h"
#include "region_ambiguity_prepare.h"

namespace dapo_fast {
namespace {

using namespace soft_iou_math;
using namespace region_ambiguity_math;

// Per-pixel running top-2 of mask values: max1/idx1 the largest value and its proposal, max2 the
// second largest (equal values count twice). Branch-free selects, so the compiler vectorises.
template <typename T>
inline void top2_impl(const T* __restrict v, int p, T* __restrict max1, int* __restrict idx1, T* __restrict max2,
                      int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T x = v[i], m1 = max1[i], m2 = max2[i];
    const bool above = x > m1;
    max2[i] = above ? m1 : (x > m2 ? x : m2);
    idx1[i] = above ? p : idx1[i];
    max1[i] = above ? x : m1;
  }
}

template <typename T>
inline void union_impl(const T* __restrict max1, const int* __restrict idx1, const T* __restrict max2, int exclude,
                       T* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = idx1[i] == exclude ? max2[i] : max1[i];
}

DAPO_CPU_CLONES void top2_update(const float* v, int p, float* max1, int* idx1, float* max2, int64_t n) {
  top2_impl(v, p, max1, idx1, max2, n);
}
DAPO_CPU_CLONES void top2_update(const double* v, int p, double* max1, int* idx1, double* max2, int64_t n) {
  top2_impl(v, p, max1, idx1, max2, n);
}
// out[i] = idx1[i] == exclude ? max2[i] : max1[i] (the union of all masks but `exclude`)
DAPO_CPU_CLONES void union_without(const float* max1, const int* idx1, const float* max2, int exclude, float* out,
                                   int64_t n) {
  union_impl(max1, idx1, max2, exclude, out, n);
}
DAPO_CPU_CLONES void union_without(const double* max1, const int* idx1, const double* max2, int exclude, double* out,
                                   int64_t n) {
  union_impl(max1, idx1, max2, exclude, out, n);
}

template <typename scalar_t, typename mask_t>
void region_ambiguity_kernel(const scalar_t* response, const mask_t* masks, const bool* valid, int64_t b_count,
                             int64_t s_count, int64_t p_count, int64_t hw, int variant, double eps_d,
                             scalar_t* ambiguity, int64_t* foreground, scalar_t* grad_field) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t eps = static_cast<acc_t>(eps_d);
  dapo_fast::parallel_for(0, b_count, grain_for((s_count + 1) * p_count * hw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> m, r, max1, max2, bg;
    std::vector<int> idx1;
    for (int64_t b = begin; b < end; ++b) {
      const bool* vb = valid + b * p_count;
      proposal_masks_cpu::stage_masks(masks + b * p_count * hw, vb, p_count, hw, m);
      max1.assign(hw, acc_t(0));
      max2.assign(hw, acc_t(0));
      idx1.assign(hw, -1);
      for (int64_t p = 0; p < p_count; ++p) {
        if (!vb[p]) continue;
        top2_update(m.data() + p * hw, static_cast<int>(p), max1.data(), idx1.data(), max2.data(), hw);
      }
      for (int64_t s = 0; s < s_count; ++s) {
        const int64_t bs = b * s_count + s;
        proposal_masks_cpu::stage_map(response + bs * hw, hw, r);
        // foreground: highest alignment score among valid masks, lowest index on ties; a NaN score
        // (a NaN product) wins, as in torch.argmax
        int fg = -1;
        acc_t best = -std::numeric_limits<acc_t>::infinity();
        for (int64_t p = 0; p < p_count; ++p) {
          if (!vb[p]) continue;
          const acc_t score = hw > 0 ? cpu_vec::max_product(r.data(), m.data() + p * hw, hw) : acc_t(0);
          if (proposal_alignment_math::FirstMax()(score, p, best, fg)) best = score, fg = static_cast<int>(p);
        }
        const acc_t* mf = fg >= 0 ? m.data() + fg * hw : nullptr;
        acc_t sum_r = cpu_vec::sum(r.data(), hw);
        acc_t inter_f = 0, sum_f = 0, inter_b = 0, sum_b = 0;
        if (mf != nullptr) {
          inter_f = cpu_vec::dot(r.data(), mf, hw);
          sum_f = cpu_vec::sum(mf, hw);
        }
        // background union at each pixel: the top value unless the foreground holds it
        bg.resize(hw);
        union_without(max1.data(), idx1.data(), max2.data(), fg, bg.data(), hw);
        inter_b = cpu_vec::dot(r.data(), bg.data(), hw);
        sum_b = cpu_vec::sum(bg.data(), hw);
        const acc_t den_f = soft_denominator(inter_f, sum_r, sum_f, variant, eps);
        const acc_t den_b = soft_denominator(inter_b, sum_r, sum_b, variant, eps);
        ambiguity[bs] = static_cast<scalar_t>(region_ambiguity_math::ambiguity(inter_f, den_f, inter_b, den_b));
        foreground[bs] = fg;
        if (grad_field != nullptr) {
          acc_t a_f, c_f, a_b, c_b;
          soft_iou_grad_coeffs(inter_f, den_f, variant, a_f, c_f);
          soft_iou_grad_coeffs(inter_b, den_b, variant, a_b, c_b);
          const acc_t constant = c_f - c_b;
          scalar_t* g = grad_field + bs * hw;
          if (mf != nullptr) {
            for (int64_t i = 0; i < hw; ++i) g[i] = static_cast<scalar_t>(field(bg[i], mf[i], a_b, a_f, constant));
          } else {
            for (int64_t i = 0; i < hw; ++i) g[i] = static_cast<scalar_t>(bg[i] * a_b + constant);
          }
        }
      }
    }
  });
}

struct CpuKernels {
  static void run(const RegionAmbiguity& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.response.scalar_type(), "region_ambiguity_cpu", [&] {
      proposal_masks_cpu::dispatch_mask<scalar_t>(p.masks, [&](auto tag) {
        using mask_t = decltype(tag);
        region_ambiguity_kernel<scalar_t, mask_t>(
            p.response.data_ptr<scalar_t>(), proposal_masks_cpu::mask_ptr<mask_t>(p.masks), p.valid.data_ptr<bool>(),
            p.n.b, p.n.s, p.n.p, p.n.hw, p.variant, p.eps, p.ambiguity.data_ptr<scalar_t>(),
            p.foreground.data_ptr<int64_t>(), p.with_grad ? p.field.data_ptr<scalar_t>() : nullptr);
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_region_ambiguity<CpuKernels>(m); }

}  // namespace dapo_fast
