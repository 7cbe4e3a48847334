// Tensor glue of the fused pseudo-label loss on CUDA: checks, the cuBLAS tiling of
// pseudo_label_loss_driver.h, the row kernel launch, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "pseudo_label_loss_checks.h"
#include "pseudo_label_loss_cuda.h"
#include "pseudo_label_loss_driver.h"

namespace dapo_fast {
namespace {

using namespace pseudo_label_math;

constexpr int64_t kCudaTileElements = int64_t(1) << 24;  // 64 MB float logits tile

void launch_rows(const PseudoLabelTile& tile) {
  PseudoLabelRowArgs a;
  a.s = tile.s.data_ptr();
  a.t = tile.t.data_ptr();
  a.s_member = tile.s_member.data_ptr<uint8_t>();
  a.t_member = tile.t_member.data_ptr<uint8_t>();
  a.t_column = tile.t_column.data_ptr<int64_t>();
  a.s_member_stride = tile.s_member_stride;
  a.valid_row = tile.valid_row.data_ptr<uint8_t>();
  a.coef = tile.write_grad ? tile.coef.data_ptr() : nullptr;
  a.loss = tile.loss.data_ptr();
  a.rows = tile.rows;
  a.num_q = tile.num_q;
  a.s_cols = tile.s_cols;
  a.t_cols = tile.t_cols;
  a.inv_tau = tile.inv_tau;
  a.inv_teacher_tau = tile.inv_teacher_tau;
  a.write_grad = tile.write_grad;
  a.is_double = tile.s.scalar_type() == at::kDouble;
  pseudo_label_rows_cuda_launch(a, c10::cuda::getCurrentCUDAStream().stream());
}

struct Inputs {
  at::Tensor p, r, tp, tr, pv, rv;
  std::optional<at::Tensor> fn;
};

Inputs prepare(const at::Tensor& phrase, const at::Tensor& region, const at::Tensor& teacher_phrase,
               const at::Tensor& teacher_region, const at::Tensor& phrase_valid, const at::Tensor& region_valid,
               const std::optional<at::Tensor>& fn_mask) {
  const auto ct = phrase.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  Inputs in{phrase.to(ct).contiguous(), region.to(ct).contiguous(), teacher_phrase.to(ct).contiguous(),
            teacher_region.to(ct).contiguous(), phrase_valid.contiguous(), region_valid.contiguous(), std::nullopt};
  if (fn_mask.has_value()) in.fn = fn_mask->contiguous();
  return in;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> forward_cuda(
    const at::Tensor& phrase, const at::Tensor& region, const at::Tensor& teacher_phrase,
    const at::Tensor& teacher_region, const at::Tensor& phrase_valid, const at::Tensor& region_valid,
    const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau, c10::string_view mode_name,
    c10::string_view reduction_name, bool want_grad_phrase, bool want_grad_region) {
  const int mode = parse_loss_mode(std::string_view(mode_name.data(), mode_name.size()));
  const int reduction = parse_loss_reduction(std::string_view(reduction_name.data(), reduction_name.size()));
  check_pseudo_label_loss_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                               tau, teacher_tau, mode);
  c10::cuda::CUDAGuard guard(phrase.device());
  const Inputs in = prepare(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask);
  const int64_t b = phrase.size(0), q = phrase.size(1);
  const bool want_gp = want_grad_phrase && reduction != kReduceNone;
  const bool want_gr = want_grad_region && reduction != kReduceNone;
  at::Tensor coef;
  if (want_gp || want_gr) {
    coef = at::ones({b * q}, in.p.options());
    if (reduction == kReduceMean) coef = coef.div(phrase_valid.sum().clamp_min(1));
  }
  PseudoLabelResult res = pseudo_label_loss_tiles(in.p, in.r, in.tp, in.tr, in.pv, in.rv, in.fn, tau, teacher_tau,
                                                  mode, coef, want_gp, want_gr, kCudaTileElements, launch_rows);
  const auto dtype = phrase.scalar_type();
  at::Tensor loss = reduction == kReduceNone ? res.loss_rows.view({b, q})
                    : reduction == kReduceSum ? res.loss_rows.sum()
                                              : res.loss_rows.sum().div(phrase_valid.sum().clamp_min(1));
  return {loss.to(dtype), want_gp ? res.grad_phrase.to(dtype) : at::empty({0}, phrase.options()),
          want_gr ? res.grad_region.to(dtype) : at::empty({0}, phrase.options())};
}

std::tuple<at::Tensor, at::Tensor> backward_cuda(const at::Tensor& grad_loss, const at::Tensor& phrase,
                                                 const at::Tensor& region, const at::Tensor& teacher_phrase,
                                                 const at::Tensor& teacher_region, const at::Tensor& phrase_valid,
                                                 const at::Tensor& region_valid,
                                                 const std::optional<at::Tensor>& fn_mask, double tau,
                                                 double teacher_tau, c10::string_view mode_name,
                                                 c10::string_view reduction_name) {
  const int mode = parse_loss_mode(std::string_view(mode_name.data(), mode_name.size()));
  const int reduction = parse_loss_reduction(std::string_view(reduction_name.data(), reduction_name.size()));
  check_pseudo_label_loss_args(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask,
                               tau, teacher_tau, mode);
  c10::cuda::CUDAGuard guard(phrase.device());
  const int64_t b = phrase.size(0), q = phrase.size(1);
  const Inputs in = prepare(phrase, region, teacher_phrase, teacher_region, phrase_valid, region_valid, fn_mask);
  at::Tensor coef = grad_loss.to(in.p.scalar_type()).reshape({-1}).expand({b * q}).contiguous();
  if (reduction == kReduceMean) coef = coef.div(phrase_valid.sum().clamp_min(1));
  PseudoLabelResult res = pseudo_label_loss_tiles(in.p, in.r, in.tp, in.tr, in.pv, in.rv, in.fn, tau, teacher_tau,
                                                  mode, coef, true, true, kCudaTileElements, launch_rows);
  return {res.grad_phrase.to(phrase.scalar_type()), res.grad_region.to(phrase.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) {
  m.impl("pseudo_label_contrastive_loss", &forward_cuda);
  m.impl("pseudo_label_contrastive_loss_backward", &backward_cuda);
}

}  // namespace dapo_fast
