// proposal_alignment CPU kernels. Forward: parallel over images, each map against every staged
// mask with a vectorised max, then a scan for the first pixel reaching it (the tie rule; a NaN
// product makes the score NaN, and its first pixel gets the gradient, as torch.max).
// Backward: parallel over maps; each thread writes only its own maps' gradient (no atomics).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <vector>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "../common/proposal_masks_cpu.h"
#include "proposal_alignment_prepare.h"

namespace dapo_fast {
namespace {

template <typename scalar_t, typename mask_t>
void forward_kernel(const scalar_t* response, const mask_t* masks, const bool* valid, int64_t b_count,
                    int64_t s_count, int64_t p_count, int64_t hw, scalar_t* scores, int64_t* argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  dapo_fast::parallel_for(0, b_count, grain_for((s_count + 1) * p_count * hw), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> m, r;
    for (int64_t b = begin; b < end; ++b) {
      const bool* vb = valid + b * p_count;
      proposal_masks_cpu::stage_masks(masks + b * p_count * hw, vb, p_count, hw, m);
      for (int64_t s = 0; s < s_count; ++s) {
        const int64_t bs = b * s_count + s;
        proposal_masks_cpu::stage_map(response + bs * hw, hw, r);
        for (int64_t p = 0; p < p_count; ++p) {
          const int64_t out = bs * p_count + p;
          if (!vb[p] || hw == 0) {
            scores[out] = scalar_t(0);
            argmax[out] = -1;
            continue;
          }
          const acc_t* mp = m.data() + p * hw;
          const acc_t best = cpu_vec::max_product(r.data(), mp, hw);
          const bool nan = best != best;
          int64_t at = 0;  // first pixel reaching the maximum, or the first NaN product (torch.max's)
          for (int64_t i = 0; i < hw; ++i) {
            const acc_t v = r[i] * mp[i];
            if (nan ? v != v : v == best) {
              at = i;
              break;
            }
          }
          scores[out] = static_cast<scalar_t>(r[at] * mp[at]);
          argmax[out] = at;
        }
      }
    }
  });
}

template <typename scalar_t, typename mask_t>
void backward_kernel(const scalar_t* grad, const int64_t* argmax, const mask_t* masks, int64_t b_count,
                     int64_t s_count, int64_t p_count, int64_t hw, scalar_t* grad_response) {
  using acc_t = at::opmath_type<scalar_t>;
  dapo_fast::parallel_for(0, b_count * s_count, grain_for(hw + p_count), [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc;
    for (int64_t bs = begin; bs < end; ++bs) {
      const int64_t b = bs / s_count;
      acc.assign(hw, acc_t(0));
      for (int64_t p = 0; p < p_count; ++p) {
        const int64_t at = argmax[bs * p_count + p];
        if (at < 0 || at >= hw) continue;  // invalid mask (-1), or not a pixel of this map
        acc[at] += static_cast<acc_t>(grad[bs * p_count + p]) * static_cast<acc_t>(masks[(b * p_count + p) * hw + at]);
      }
      for (int64_t i = 0; i < hw; ++i) grad_response[bs * hw + i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

struct CpuKernels {
  static constexpr bool kBackwardAddsIntoZeros = false;

  static void forward(const ProposalAlignment& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.response.scalar_type(), "proposal_alignment_cpu", [&] {
      proposal_masks_cpu::dispatch_mask<scalar_t>(p.masks, [&](auto tag) {
        using mask_t = decltype(tag);
        forward_kernel<scalar_t, mask_t>(p.response.data_ptr<scalar_t>(),
                                         proposal_masks_cpu::mask_ptr<mask_t>(p.masks), p.valid.data_ptr<bool>(),
                                         p.n.b, p.n.s, p.n.p, p.n.hw, p.scores.data_ptr<scalar_t>(),
                                         p.argmax.data_ptr<int64_t>());
      });
    });
  }

  static void backward(const ProposalAlignmentBackward& p) {
    const auto type = p.grad.scalar_type();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, type, "proposal_alignment_backward_cpu", [&] {
      proposal_masks_cpu::dispatch_mask<scalar_t>(p.masks, [&](auto tag) {
        using mask_t = decltype(tag);
        backward_kernel<scalar_t, mask_t>(p.grad.data_ptr<scalar_t>(), p.argmax.data_ptr<int64_t>(),
                                          proposal_masks_cpu::mask_ptr<mask_t>(p.masks), p.n.b, p.n.s, p.n.p, p.n.hw,
                                          p.out.data_ptr<scalar_t>());
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_proposal_alignment<CpuKernels>(m); }

}  // namespace dapo_fast
