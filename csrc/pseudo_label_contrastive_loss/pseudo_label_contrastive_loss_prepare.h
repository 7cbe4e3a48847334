// The one entry of the pseudo-label contrastive loss ops, registered for CPU and CUDA alike
// (pseudo_label_contrastive_loss_*entry<Kernels>): the parsed mode and reduction, checks, the
// inputs in the compute dtype, the per-row upstream gradient, then the device's tiles
// (Kernels::tiles: the tiling of pseudo_label_contrastive_loss_driver.h with the device's row
// kernel, in pseudo_label_contrastive_loss_cpu.cpp and pseudo_label_contrastive_loss_cuda_impl.cpp),
// and the outputs from their result.
#pragma once
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <optional>
#include <string_view>
#include <tuple>

#include "../common/checks.h"
#include "pseudo_label_contrastive_loss_common.h"
#include "pseudo_label_contrastive_loss_driver.h"

namespace dapo_fast {

inline int parse_loss_mode(c10::string_view name) {
  const std::string_view mode(name.data(), name.size());
  if (mode == "none") return pseudo_label_math::kModeNone;
  if (mode == "fne") return pseudo_label_math::kModeFne;
  if (mode == "fnc") return pseudo_label_math::kModeFnc;
  TORCH_CHECK(false, "mode must be one of 'none', 'fne', 'fnc', got '", mode, "'");
}

inline int parse_loss_reduction(c10::string_view name) {
  const std::string_view reduction(name.data(), name.size());
  if (reduction == "mean") return pseudo_label_math::kReduceMean;
  if (reduction == "sum") return pseudo_label_math::kReduceSum;
  if (reduction == "none") return pseudo_label_math::kReduceNone;
  TORCH_CHECK(false, "reduction must be one of 'mean', 'sum', 'none', got '", reduction, "'");
}

inline void check_pseudo_label_loss_args(const at::Tensor& phrase, const at::Tensor& region,
                                         const at::Tensor& teacher_phrase, const at::Tensor& teacher_region,
                                         const at::Tensor& phrase_valid, const at::Tensor& region_valid,
                                         const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau,
                                         int mode) {
  check_dim(phrase, 3, "phrase");
  check_dim(region, 3, "region");
  check_dim(teacher_phrase, 3, "teacher_phrase");
  check_dim(teacher_region, 3, "teacher_region");
  check_floating(phrase, "phrase");
  check_same_dtype(phrase, "phrase", region, "region");
  check_same_dtype(phrase, "phrase", teacher_phrase, "teacher_phrase");
  check_same_dtype(phrase, "phrase", teacher_region, "teacher_region");
  check_same_device(phrase, "phrase", region, "region");
  check_same_device(phrase, "phrase", teacher_phrase, "teacher_phrase");
  check_same_device(phrase, "phrase", teacher_region, "teacher_region");
  check_same_device(phrase, "phrase", phrase_valid, "phrase_valid");
  check_same_device(phrase, "phrase", region_valid, "region_valid");
  const int64_t b = phrase.size(0), q = phrase.size(1), k = region.size(1);
  TORCH_CHECK(region.size(0) == b && region.size(2) == phrase.size(2), "region must have shape [B, K, D] = [", b,
              ", K, ", phrase.size(2), "] like phrase, got ", region.sizes());
  TORCH_CHECK(teacher_phrase.size(0) == b && teacher_phrase.size(1) == q,
              "teacher_phrase must have shape [B, Q, D'] = [", b, ", ", q, ", D'], got ", teacher_phrase.sizes());
  TORCH_CHECK(teacher_region.size(0) == b && teacher_region.size(1) == k &&
                  teacher_region.size(2) == teacher_phrase.size(2),
              "teacher_region must have shape [B, K, D'] = [", b, ", ", k, ", ", teacher_phrase.size(2), "], got ",
              teacher_region.sizes());
  TORCH_CHECK(phrase_valid.scalar_type() == at::kBool && phrase_valid.dim() == 2 && phrase_valid.size(0) == b &&
                  phrase_valid.size(1) == q,
              "phrase_valid must be a bool tensor of shape [B, Q] = [", b, ", ", q, "], got ",
              phrase_valid.scalar_type(), " ", phrase_valid.sizes());
  TORCH_CHECK(region_valid.scalar_type() == at::kBool && region_valid.dim() == 2 && region_valid.size(0) == b &&
                  region_valid.size(1) == k,
              "region_valid must be a bool tensor of shape [B, K] = [", b, ", ", k, "], got ",
              region_valid.scalar_type(), " ", region_valid.sizes());
  if (fn_mask.has_value()) {
    const at::Tensor& fn = *fn_mask;
    check_same_device(phrase, "phrase", fn, "fn_mask");
    TORCH_CHECK(fn.scalar_type() == at::kBool && fn.dim() == 3 && fn.size(0) == b && fn.size(1) == b &&
                    fn.size(2) == k,
                "fn_mask must be a bool tensor of shape [B, B, K] = [", b, ", ", b, ", ", k, "], got ",
                fn.scalar_type(), " ", fn.sizes());
  } else {
    TORCH_CHECK(mode == pseudo_label_math::kModeNone, "fn_mask is required for mode 'fne' and 'fnc'");
  }
  TORCH_CHECK(tau > 0, "tau must be > 0, got ", tau);
  TORCH_CHECK(teacher_tau > 0, "teacher_tau must be > 0, got ", teacher_tau);
}

struct PseudoLabelLoss {
  // contiguous, in the compute dtype: float (also for half / bfloat16) or double
  at::Tensor phrase, region, teacher_phrase, teacher_region;
  at::Tensor phrase_valid, region_valid;  // contiguous bool
  std::optional<at::Tensor> fn_mask;      // contiguous bool
  at::Tensor coef;  // [B*Q] upstream gradient per row (divided for "mean"); undefined when no gradient
  double tau = 1, teacher_tau = 1;
  int mode = pseudo_label_math::kModeNone, reduction = pseudo_label_math::kReduceMean;
  bool want_grad_phrase = false, want_grad_region = false;
  at::ScalarType dtype = at::kFloat;  // the inputs' dtype: what the op returns

  // The fused loss tiles with a device's row kernel.
  template <typename RowKernel>
  PseudoLabelResult tiles(int64_t tile_elements, RowKernel&& row_kernel) const {
    return pseudo_label_loss_tiles(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid,
                                   fn_mask, tau, teacher_tau, mode, coef, want_grad_phrase, want_grad_region,
                                   tile_elements, row_kernel);
  }

  // (loss, grad_phrase or [0], grad_region or [0]) in the inputs' dtype
  std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_outputs(const PseudoLabelResult& res) const {
    using namespace pseudo_label_math;
    const int64_t b = phrase.size(0), q = phrase.size(1);
    at::Tensor loss = reduction == kReduceNone  ? res.loss_rows.view({b, q})
                      : reduction == kReduceSum ? res.loss_rows.sum()
                                                : res.loss_rows.sum().div(phrase_valid.sum().clamp_min(1));
    const auto options = phrase.options().dtype(dtype);
    return {loss.to(dtype), want_grad_phrase ? res.grad_phrase.to(dtype) : at::empty({0}, options),
            want_grad_region ? res.grad_region.to(dtype) : at::empty({0}, options)};
  }

  std::tuple<at::Tensor, at::Tensor> backward_outputs(const PseudoLabelResult& res) const {
    return {res.grad_phrase.to(dtype), res.grad_region.to(dtype)};
  }
};

// Checks, then the inputs in the compute dtype (half / bfloat16 run in float), contiguous, not
// copied otherwise. The features of invalid phrases and regions take no part: the teacher's are
// only read through the teacher-set masks, the student's enter the gradient products as zeros
// (pseudo_label_loss_tiles).
inline PseudoLabelLoss pseudo_label_inputs(const at::Tensor& phrase, const at::Tensor& region,
                                           const at::Tensor& teacher_phrase, const at::Tensor& teacher_region,
                                           const at::Tensor& phrase_valid, const at::Tensor& region_valid,
                                           const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau,
                                           c10::string_view mode, c10::string_view reduction) {
  PseudoLabelLoss p;
  p.mode = parse_loss_mode(mode);
  p.reduction = parse_loss_reduction(reduction);
  check_pseudo_label_loss_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                               tau, teacher_tau, p.mode);
  p.dtype = phrase.scalar_type();
  const auto ct = p.dtype == at::kDouble ? at::kDouble : at::kFloat;
  p.phrase = phrase.to(ct).contiguous();
  p.region = region.to(ct).contiguous();
  p.teacher_phrase = teacher_phrase.to(ct).contiguous();
  p.teacher_region = teacher_region.to(ct).contiguous();
  p.phrase_valid = phrase_valid.contiguous();
  p.region_valid = region_valid.contiguous();
  if (fn_mask.has_value()) p.fn_mask = fn_mask->contiguous();
  p.tau = tau;
  p.teacher_tau = teacher_tau;
  return p;
}

// The forward also returns the gradient for an upstream gradient of 1 when a reduction is asked
// for and want_grad_* (computed from the same logits tile).
inline PseudoLabelLoss prepare_pseudo_label_loss(const at::Tensor& phrase, const at::Tensor& region,
                                                 const at::Tensor& teacher_phrase, const at::Tensor& teacher_region,
                                                 const at::Tensor& phrase_valid, const at::Tensor& region_valid,
                                                 const std::optional<at::Tensor>& fn_mask, double tau,
                                                 double teacher_tau, c10::string_view mode,
                                                 c10::string_view reduction, bool want_grad_phrase,
                                                 bool want_grad_region) {
  using namespace pseudo_label_math;
  PseudoLabelLoss p = pseudo_label_inputs(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid,
                                          fn_mask, tau, teacher_tau, mode, reduction);
  p.want_grad_phrase = want_grad_phrase && p.reduction != kReduceNone;
  p.want_grad_region = want_grad_region && p.reduction != kReduceNone;
  if (p.want_grad_phrase || p.want_grad_region) {
    p.coef = at::ones({phrase.size(0) * phrase.size(1)}, p.phrase.options());
    if (p.reduction == kReduceMean) p.coef = p.coef.div(phrase_valid.sum().clamp_min(1));
  }
  return p;
}

// Gradients (phrase, region) for the upstream gradient grad_loss (the loss's shape).
inline PseudoLabelLoss prepare_pseudo_label_loss_backward(
    const at::Tensor& grad_loss, const at::Tensor& phrase, const at::Tensor& region, const at::Tensor& teacher_phrase,
    const at::Tensor& teacher_region, const at::Tensor& phrase_valid, const at::Tensor& region_valid,
    const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau, c10::string_view mode,
    c10::string_view reduction) {
  using namespace pseudo_label_math;
  PseudoLabelLoss p = pseudo_label_inputs(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid,
                                          fn_mask, tau, teacher_tau, mode, reduction);
  const int64_t b = phrase.size(0), q = phrase.size(1);
  if (p.reduction == kReduceNone) {
    TORCH_CHECK(grad_loss.dim() == 2 && grad_loss.size(0) == b && grad_loss.size(1) == q,
                "grad_loss must have shape [B, Q] for reduction 'none', got ", grad_loss.sizes());
  } else {
    TORCH_CHECK(grad_loss.numel() == 1, "grad_loss must be a scalar for reduction 'mean'/'sum', got ",
                grad_loss.sizes());
  }
  check_same_device(phrase, "phrase", grad_loss, "grad_loss");
  p.want_grad_phrase = p.want_grad_region = true;
  p.coef = grad_loss.to(p.phrase.scalar_type()).reshape({-1}).expand({b * q}).contiguous();
  if (p.reduction == kReduceMean) p.coef = p.coef.div(phrase_valid.sum().clamp_min(1));
  return p;
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor, at::Tensor> pseudo_label_contrastive_loss_entry(
    const at::Tensor& phrase, const at::Tensor& region, const at::Tensor& teacher_phrase,
    const at::Tensor& teacher_region, const at::Tensor& phrase_valid, const at::Tensor& region_valid,
    const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau, c10::string_view mode,
    c10::string_view reduction, bool want_grad_phrase, bool want_grad_region) {
  const PseudoLabelLoss p =
      prepare_pseudo_label_loss(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                                tau, teacher_tau, mode, reduction, want_grad_phrase, want_grad_region);
  return p.forward_outputs(Kernels::tiles(p));
}

template <typename Kernels>
std::tuple<at::Tensor, at::Tensor> pseudo_label_contrastive_loss_backward_entry(
    const at::Tensor& grad_loss, const at::Tensor& phrase, const at::Tensor& region,
    const at::Tensor& teacher_phrase, const at::Tensor& teacher_region, const at::Tensor& phrase_valid,
    const at::Tensor& region_valid, const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau,
    c10::string_view mode, c10::string_view reduction) {
  const PseudoLabelLoss p = prepare_pseudo_label_loss_backward(grad_loss, phrase, region, teacher_phrase,
                                                               teacher_region, phrase_valid, region_valid, fn_mask,
                                                               tau, teacher_tau, mode, reduction);
  return p.backward_outputs(Kernels::tiles(p));
}

// Registers the ops with a device's kernels (the TORCH_LIBRARY_IMPL blocks of the device files).
template <typename Kernels>
void register_pseudo_label_contrastive_loss(torch::Library& m) {
  m.impl("pseudo_label_contrastive_loss", &pseudo_label_contrastive_loss_entry<Kernels>);
  m.impl("pseudo_label_contrastive_loss_backward", &pseudo_label_contrastive_loss_backward_entry<Kernels>);
}

}  // namespace dapo_fast
