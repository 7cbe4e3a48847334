// proposal_alignment CPU kernels. Forward: parallel over images, each map against every staged
// mask with a vectorised max, then a scan for the first pixel reaching it (the tie rule).
// Backward: parallel over maps; each thread writes only its own maps' gradient (no atomics).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "pcnet_checks.h"
#include "pcnet_cpu.h"

namespace dapo_fast {
namespace {

template <typename scalar_t, typename mask_t>
void forward_kernel(const scalar_t* response, const mask_t* masks, const bool* valid, int64_t b_count,
                    int64_t s_count, int64_t p_count, int64_t hw, scalar_t* scores, int64_t* argmax) {
  using acc_t = at::opmath_type<scalar_t>;
  at::parallel_for(0, b_count, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> m, r;
    for (int64_t b = begin; b < end; ++b) {
      const bool* vb = valid + b * p_count;
      pcnet_cpu::stage_masks(masks + b * p_count * hw, vb, p_count, hw, m);
      for (int64_t s = 0; s < s_count; ++s) {
        const int64_t bs = b * s_count + s;
        pcnet_cpu::stage_map(response + bs * hw, hw, r);
        for (int64_t p = 0; p < p_count; ++p) {
          const int64_t out = bs * p_count + p;
          if (!vb[p] || hw == 0) {
            scores[out] = scalar_t(0);
            argmax[out] = -1;
            continue;
          }
          const acc_t* mp = m.data() + p * hw;
          const acc_t best = pcnet_vec::max_product(r.data(), mp, hw);
          int64_t at = 0;  // first pixel reaching the maximum (0 if every product is NaN)
          for (int64_t i = 0; i < hw; ++i) {
            if (r[i] * mp[i] == best) {
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
  at::parallel_for(0, b_count * s_count, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc;
    for (int64_t bs = begin; bs < end; ++bs) {
      const int64_t b = bs / s_count;
      acc.assign(hw, acc_t(0));
      for (int64_t p = 0; p < p_count; ++p) {
        const int64_t at = argmax[bs * p_count + p];
        if (at < 0) continue;
        acc[at] += static_cast<acc_t>(grad[bs * p_count + p]) * static_cast<acc_t>(masks[(b * p_count + p) * hw + at]);
      }
      for (int64_t i = 0; i < hw; ++i) grad_response[bs * hw + i] = static_cast<scalar_t>(acc[i]);
    }
  });
}

std::tuple<at::Tensor, at::Tensor> proposal_alignment_cpu(const at::Tensor& response_in, const at::Tensor& masks_in,
                                                          const at::Tensor& valid_in) {
  check_pcnet_args(response_in, masks_in);
  check_mask_valid(response_in, masks_in, valid_in);
  const at::Tensor response = response_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const at::Tensor valid = valid_in.contiguous();
  const int64_t b = response.size(0), s = response.size(1), p = masks.size(1);
  const int64_t hw = response.size(2) * response.size(3);
  at::Tensor scores = at::empty({b, s, p}, response.options());
  at::Tensor argmax = at::empty({b, s, p}, response.options().dtype(at::kLong));
  if (scores.numel() == 0) return {scores, argmax};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, response.scalar_type(), "proposal_alignment_cpu", [&] {
    pcnet_cpu::dispatch_mask<scalar_t>(masks, [&](auto tag) {
      using mask_t = decltype(tag);
      forward_kernel<scalar_t, mask_t>(response.data_ptr<scalar_t>(), pcnet_cpu::mask_ptr<mask_t>(masks),
                                       valid.data_ptr<bool>(), b, s, p, hw, scores.data_ptr<scalar_t>(),
                                       argmax.data_ptr<int64_t>());
    });
  });
  return {scores, argmax};
}

at::Tensor proposal_alignment_backward_cpu(const at::Tensor& grad_in, const at::Tensor& argmax_in,
                                           const at::Tensor& masks_in, int64_t height, int64_t width) {
  check_dim(grad_in, 3, "grad");
  check_floating(grad_in, "grad");
  TORCH_CHECK(argmax_in.sizes() == grad_in.sizes() && argmax_in.scalar_type() == at::kLong,
              "argmax must be int64 with grad's shape ", grad_in.sizes(), ", got ", argmax_in.sizes());
  check_dim(masks_in, 4, "masks");
  TORCH_CHECK(masks_in.size(0) == grad_in.size(0) && masks_in.size(1) == grad_in.size(2) &&
                  masks_in.size(2) == height && masks_in.size(3) == width,
              "masks must have shape [B, P, height, width] matching grad ", grad_in.sizes(), ", got ", masks_in.sizes());
  TORCH_CHECK(masks_in.scalar_type() == at::kBool || masks_in.scalar_type() == at::kByte ||
                  masks_in.scalar_type() == grad_in.scalar_type(),
              "masks must be bool, uint8 or grad's dtype, got ", masks_in.scalar_type());
  const at::Tensor grad = grad_in.contiguous();
  const at::Tensor argmax = argmax_in.contiguous();
  const at::Tensor masks = masks_in.contiguous();
  const int64_t b = grad.size(0), s = grad.size(1), p = grad.size(2);
  at::Tensor out = at::empty({b, s, height, width}, grad.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(), "proposal_alignment_backward_cpu", [&] {
    pcnet_cpu::dispatch_mask<scalar_t>(masks, [&](auto tag) {
      using mask_t = decltype(tag);
      backward_kernel<scalar_t, mask_t>(grad.data_ptr<scalar_t>(), argmax.data_ptr<int64_t>(),
                                        pcnet_cpu::mask_ptr<mask_t>(masks), b, s, p, height * width,
                                        out.data_ptr<scalar_t>());
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("proposal_alignment", &proposal_alignment_cpu);
  m.impl("proposal_alignment_backward", &proposal_alignment_backward_cpu);
}

}  // namespace dapo_fast
