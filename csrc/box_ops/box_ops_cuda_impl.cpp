// Tensor glue of the box-op CUDA kernels: checks, allocation, stream, registration.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../common/cuda_glue.h"
#include "box_ops_checks.h"
#include "box_ops_cuda.h"

namespace dapo_fast {
namespace {

void* stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

struct HostWeights {
  double v[4];
  explicit HostWeights(c10::ArrayRef<double> w) {
    const box_math::Weights wt = parse_weights(w);
    v[0] = wt.x, v[1] = wt.y, v[2] = wt.w, v[3] = wt.h;
  }
};

at::Tensor box_iou_cuda(const at::Tensor& a_in, const at::Tensor& b_in) {
  check_floating(a_in, "a");
  TORCH_CHECK(a_in.dim() == 3 && a_in.size(2) == 4, "a must have shape [B, N, 4], got ", a_in.sizes());
  TORCH_CHECK(b_in.dim() == 3 && b_in.size(2) == 4 && b_in.size(0) == a_in.size(0),
              "b must have shape [B, M, 4] with B = a.size(0), got ", b_in.sizes());
  check_same_dtype(a_in, "a", b_in, "b");
  check_same_device(a_in, "a", b_in, "b");
  c10::cuda::CUDAGuard guard(a_in.device());
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  at::Tensor out = at::empty({a.size(0), a.size(1), b.size(1)}, a.options());
  box_iou_cuda_launch(cuda_dtype(a), a.data_ptr(), b.data_ptr(), out.data_ptr(), a.size(0), a.size(1), b.size(1),
                      stream());
  return out;
}

at::Tensor box_encode_cuda(const at::Tensor& p_in, const at::Tensor& t_in, c10::ArrayRef<double> w) {
  check_pair(p_in, "proposals", t_in, "targets");
  const HostWeights wt(w);
  c10::cuda::CUDAGuard guard(p_in.device());
  const at::Tensor p = p_in.contiguous(), t = t_in.contiguous();
  at::Tensor out = at::empty(p.sizes(), p.options());
  box_encode_cuda_launch(cuda_dtype(p), p.data_ptr(), t.data_ptr(), out.data_ptr(), p.size(0), wt.v, stream());
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_encode_backward_cuda(const at::Tensor& g_in, const at::Tensor& p_in,
                                                            const at::Tensor& t_in, c10::ArrayRef<double> w) {
  check_pair(p_in, "proposals", t_in, "targets");
  check_pair(g_in, "grad", p_in, "proposals");
  const HostWeights wt(w);
  c10::cuda::CUDAGuard guard(p_in.device());
  const at::Tensor g = g_in.contiguous(), p = p_in.contiguous(), t = t_in.contiguous();
  at::Tensor gp = at::empty(p.sizes(), p.options()), gt = at::empty(p.sizes(), p.options());
  box_encode_backward_cuda_launch(cuda_dtype(p), g.data_ptr(), p.data_ptr(), t.data_ptr(), gp.data_ptr(),
                                  gt.data_ptr(), p.size(0), wt.v, stream());
  return {gp, gt};
}

at::Tensor box_decode_cuda(const at::Tensor& d_in, const at::Tensor& b_in, c10::ArrayRef<double> w,
                           double scale_clamp) {
  check_pair(d_in, "deltas", b_in, "boxes");
  const HostWeights wt(w);
  c10::cuda::CUDAGuard guard(d_in.device());
  const at::Tensor d = d_in.contiguous(), b = b_in.contiguous();
  at::Tensor out = at::empty(d.sizes(), d.options());
  box_decode_cuda_launch(cuda_dtype(d), d.data_ptr(), b.data_ptr(), out.data_ptr(), d.size(0), wt.v, scale_clamp,
                         stream());
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_decode_backward_cuda(const at::Tensor& g_in, const at::Tensor& d_in,
                                                            const at::Tensor& b_in, c10::ArrayRef<double> w,
                                                            double scale_clamp) {
  check_pair(d_in, "deltas", b_in, "boxes");
  check_pair(g_in, "grad", d_in, "deltas");
  const HostWeights wt(w);
  c10::cuda::CUDAGuard guard(d_in.device());
  const at::Tensor g = g_in.contiguous(), d = d_in.contiguous(), b = b_in.contiguous();
  at::Tensor gd = at::empty(d.sizes(), d.options()), gb = at::empty(d.sizes(), d.options());
  box_decode_backward_cuda_launch(cuda_dtype(d), g.data_ptr(), d.data_ptr(), b.data_ptr(), gd.data_ptr(),
                                  gb.data_ptr(), d.size(0), wt.v, scale_clamp, stream());
  return {gd, gb};
}

std::tuple<at::Tensor, at::Tensor> self_taught_targets_cuda(const at::Tensor& boxes_in, const at::Tensor& scores_in,
                                                            double iou_threshold, double score_gap,
                                                            c10::ArrayRef<double> w) {
  check_floating(boxes_in, "boxes");
  TORCH_CHECK(boxes_in.dim() == 3 && boxes_in.size(2) == 4, "boxes must have shape [B, J, 4], got ", boxes_in.sizes());
  check_floating(scores_in, "scores");
  TORCH_CHECK(scores_in.dim() == 3 && scores_in.size(0) == boxes_in.size(0) && scores_in.size(2) == boxes_in.size(1),
              "scores must have shape [B, P, J] with boxes [B, J, 4] = ", boxes_in.sizes(), ", got ", scores_in.sizes());
  check_same_device(boxes_in, "boxes", scores_in, "scores");
  const HostWeights wt(w);
  c10::cuda::CUDAGuard guard(boxes_in.device());
  const at::Tensor boxes = boxes_in.contiguous(), scores = scores_in.to(boxes.scalar_type()).contiguous();
  const int64_t b = boxes.size(0), j = boxes.size(1), p = scores.size(1);
  at::Tensor deltas = at::empty({b, p, j, 4}, boxes.options()), weights = at::empty({b, p, j}, boxes.options());
  self_taught_targets_cuda_launch(cuda_dtype(boxes), boxes.data_ptr(), scores.data_ptr(), deltas.data_ptr(),
                                  weights.data_ptr(), b, p, j, iou_threshold, score_gap, wt.v, stream());
  return {deltas, weights};
}

void check_sl1(const at::Tensor& x, const at::Tensor& y, const at::Tensor& w, int64_t reduction) {
  check_floating(x, "input");
  TORCH_CHECK(y.sizes() == x.sizes(), "target must have input's shape ", x.sizes(), ", got ", y.sizes());
  TORCH_CHECK(w.sizes() == x.sizes(), "weight must have input's shape ", x.sizes(), ", got ", w.sizes());
  check_same_dtype(x, "input", y, "target");
  check_same_dtype(x, "input", w, "weight");
  TORCH_CHECK(reduction >= 0 && reduction <= 2, "reduction must be 0 (none), 1 (sum) or 2 (mean), got ", reduction);
}

at::Tensor weighted_smooth_l1_cuda(const at::Tensor& x_in, const at::Tensor& y_in, const at::Tensor& w_in,
                                   double beta, int64_t reduction) {
  check_sl1(x_in, y_in, w_in, reduction);
  TORCH_CHECK(beta >= 0, "beta must be >= 0, got ", beta);
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), w = w_in.contiguous();
  const int64_t n = x.numel();
  at::Tensor out = reduction == 0 ? at::empty(x.sizes(), x.options()) : at::empty({}, x.options());
  at::Tensor partials = at::empty({(n + 4095) / 4096 + 1}, x.options().dtype(at::kDouble));
  weighted_smooth_l1_cuda_launch(cuda_dtype(x), x.data_ptr(), y.data_ptr(), w.data_ptr(), out.data_ptr(),
                                 partials.data_ptr<double>(), n, beta, static_cast<int>(reduction), stream());
  return out;
}

at::Tensor weighted_smooth_l1_backward_cuda(const at::Tensor& g_in, const at::Tensor& x_in, const at::Tensor& y_in,
                                            const at::Tensor& w_in, double beta, int64_t reduction) {
  check_sl1(x_in, y_in, w_in, reduction);
  c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous(), w = w_in.contiguous();
  const at::Tensor g = reduction == 0 ? g_in.contiguous() : g_in.reshape({}).contiguous();
  TORCH_CHECK(reduction != 0 || g.sizes() == x.sizes(), "grad must have input's shape for reduction none");
  at::Tensor out = at::empty(x.sizes(), x.options());
  weighted_smooth_l1_backward_cuda_launch(cuda_dtype(x), g.data_ptr(), x.data_ptr(), y.data_ptr(), w.data_ptr(),
                                          out.data_ptr(), x.numel(), beta, static_cast<int>(reduction), stream());
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CUDA, m) {
  m.impl("box_iou", &box_iou_cuda);
  m.impl("box_encode", &box_encode_cuda);
  m.impl("box_encode_backward", &box_encode_backward_cuda);
  m.impl("box_decode", &box_decode_cuda);
  m.impl("box_decode_backward", &box_decode_backward_cuda);
  m.impl("self_taught_targets", &self_taught_targets_cuda);
  m.impl("weighted_smooth_l1", &weighted_smooth_l1_cuda);
  m.impl("weighted_smooth_l1_backward", &weighted_smooth_l1_backward_cuda);
}

}  // namespace dapo_fast
