// The one entry of the proposal_alignment ops, registered for CPU and CUDA alike
// (proposal_alignment_*entry<Kernels>): checks, contiguity, the outputs and the answers that need
// no kernel, then the device's kernel (Kernels::forward / backward, in proposal_alignment_cpu.cpp
// and proposal_alignment_cuda_impl.cpp).
#pragma once
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <tuple>

#include "../common/proposal_masks_prepare.h"

namespace dapo_fast {

struct ProposalAlignment {
  at::Tensor response, masks, valid;  // contiguous
  at::Tensor scores;                  // [B, S, P]
  at::Tensor argmax;                  // [B, S, P] int64
  MaskSizes n;
  bool done = false;  // the outputs already hold the answer (empty, or maps without pixels)
};

inline ProposalAlignment prepare_proposal_alignment(const at::Tensor& response, const at::Tensor& masks,
                                                    const at::Tensor& mask_valid) {
  check_response_masks(response, masks);
  check_mask_valid(response, masks, mask_valid);
  ProposalAlignment p;
  p.response = response.contiguous();
  p.masks = masks.contiguous();
  p.valid = mask_valid.contiguous();
  p.n = mask_sizes(response, masks);
  p.scores = at::empty({p.n.b, p.n.s, p.n.p}, response.options());
  p.argmax = at::empty({p.n.b, p.n.s, p.n.p}, response.options().dtype(at::kLong));
  if (p.scores.numel() == 0) {
    p.done = true;
  } else if (p.n.hw == 0) {  // no pixel: score 0, no argmax
    p.scores.zero_();
    p.argmax.fill_(-1);
    p.done = true;
  }
  return p;
}

struct ProposalAlignmentBackward {
  at::Tensor grad, argmax, masks;  // contiguous
  at::Tensor out;                  // [B, S, height, width]
  MaskSizes n;
  bool done = false;  // empty output
};

// Kernels::kBackwardAddsIntoZeros: the CUDA kernel adds into a zeroed output; the CPU kernel
// writes every pixel.
inline ProposalAlignmentBackward prepare_proposal_alignment_backward(const at::Tensor& grad, const at::Tensor& argmax,
                                                                     const at::Tensor& masks, int64_t height,
                                                                     int64_t width, bool zero_filled) {
  check_dim(grad, 3, "grad");
  check_floating(grad, "grad");
  TORCH_CHECK(argmax.sizes() == grad.sizes() && argmax.scalar_type() == at::kLong,
              "argmax must be int64 with grad's shape ", grad.sizes(), ", got ", argmax.sizes());
  check_dim(masks, 4, "masks");
  TORCH_CHECK(masks.size(0) == grad.size(0) && masks.size(1) == grad.size(2) && masks.size(2) == height &&
                  masks.size(3) == width,
              "masks must have shape [B, P, height, width] matching grad ", grad.sizes(), ", got ", masks.sizes());
  TORCH_CHECK(masks_are_bytes(masks) || masks.scalar_type() == grad.scalar_type(),
              "masks must be bool, uint8 or grad's dtype, got ", masks.scalar_type());
  check_same_device(grad, "grad", argmax, "argmax");
  check_same_device(grad, "grad", masks, "masks");
  ProposalAlignmentBackward p;
  p.grad = grad.contiguous();
  p.argmax = argmax.contiguous();
  p.masks = masks.contiguous();
  p.n = MaskSizes{grad.size(0), grad.size(1), grad.size(2), height * width};
  p.out = zero_filled ? at::zeros({p.n.b, p.n.s, height, width}, grad.options())
                      : at::empty({p.n.b, p.n.s, height, width}, grad.options());
  p.done = p.out.numel() == 0;
  return p;
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> proposal_alignment_entry(const at::Tensor& response, const at::Tensor& masks,
                                                            const at::Tensor& mask_valid) {
  const ProposalAlignment p = prepare_proposal_alignment(response, masks, mask_valid);
  if (!p.done) Kernels::forward(p);
  return {p.scores, p.argmax};
}

template <typename Kernels>
at::Tensor proposal_alignment_backward_entry(const at::Tensor& grad, const at::Tensor& argmax, const at::Tensor& masks,
                                             int64_t height, int64_t width) {
  const ProposalAlignmentBackward p =
      prepare_proposal_alignment_backward(grad, argmax, masks, height, width, Kernels::kBackwardAddsIntoZeros);
  if (!p.done) Kernels::backward(p);
  return p.out;
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_proposal_alignment(torch::Library& m) {
  m.impl("proposal_alignment", &proposal_alignment_entry<Kernels>);
  m.impl("proposal_alignment_backward", &proposal_alignment_backward_entry<Kernels>);
}

}  // namespace dapo_fast
