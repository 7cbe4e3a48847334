// box_encode / box_decode CPU kernels (and their backward): row-wise, parallel over rows.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "box_ops_checks.h"

namespace dapo_fast {
namespace {

// Runs f(row, in0[4], in1[4], in2[4] (optional), outs...) for every row in acc_t.
template <typename scalar_t, typename F>
void for_rows(int64_t rows, F&& f) {
  at::parallel_for(0, rows, 256, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) f(r);
  });
}

template <typename acc_t, typename scalar_t>
inline void load4(const scalar_t* p, acc_t* out) {
  for (int k = 0; k < 4; ++k) out[k] = static_cast<acc_t>(p[k]);
}

template <typename acc_t, typename scalar_t>
inline void store4(const acc_t* v, scalar_t* p) {
  for (int k = 0; k < 4; ++k) p[k] = static_cast<scalar_t>(v[k]);
}

at::Tensor box_encode_cpu(const at::Tensor& proposals_in, const at::Tensor& targets_in, c10::ArrayRef<double> w) {
  check_pair(proposals_in, "proposals", targets_in, "targets");
  const box_math::Weights wt = parse_weights(w);
  const at::Tensor s = proposals_in.contiguous(), t = targets_in.contiguous();
  at::Tensor out = at::empty(s.sizes(), s.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "box_encode_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *ps = s.data_ptr<scalar_t>(), *pt = t.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    for_rows<scalar_t>(s.size(0), [&](int64_t r) {
      acc_t a[4], b[4], o[4];
      load4(ps + 4 * r, a);
      load4(pt + 4 * r, b);
      box_math::encode(a, b, wt, o);
      store4(o, po + 4 * r);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_encode_backward_cpu(const at::Tensor& grad_in, const at::Tensor& proposals_in,
                                                           const at::Tensor& targets_in, c10::ArrayRef<double> w) {
  check_pair(proposals_in, "proposals", targets_in, "targets");
  check_pair(grad_in, "grad", proposals_in, "proposals");
  const box_math::Weights wt = parse_weights(w);
  const at::Tensor g = grad_in.contiguous(), s = proposals_in.contiguous(), t = targets_in.contiguous();
  at::Tensor gs = at::empty(s.sizes(), s.options()), gt = at::empty(s.sizes(), s.options());
  if (s.numel() == 0) return {gs, gt};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, s.scalar_type(), "box_encode_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *pg = g.data_ptr<scalar_t>(), *ps = s.data_ptr<scalar_t>(), *pt = t.data_ptr<scalar_t>();
    scalar_t *pgs = gs.data_ptr<scalar_t>(), *pgt = gt.data_ptr<scalar_t>();
    for_rows<scalar_t>(s.size(0), [&](int64_t r) {
      acc_t gg[4], a[4], b[4], oa[4], ob[4];
      load4(pg + 4 * r, gg);
      load4(ps + 4 * r, a);
      load4(pt + 4 * r, b);
      box_math::encode_backward(gg, a, b, wt, oa, ob);
      store4(oa, pgs + 4 * r);
      store4(ob, pgt + 4 * r);
    });
  });
  return {gs, gt};
}

at::Tensor box_decode_cpu(const at::Tensor& deltas_in, const at::Tensor& boxes_in, c10::ArrayRef<double> w,
                          double scale_clamp) {
  check_pair(deltas_in, "deltas", boxes_in, "boxes");
  const box_math::Weights wt = parse_weights(w);
  const at::Tensor d = deltas_in.contiguous(), b = boxes_in.contiguous();
  at::Tensor out = at::empty(d.sizes(), d.options());
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d.scalar_type(), "box_decode_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *pd = d.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>();
    scalar_t* po = out.data_ptr<scalar_t>();
    const acc_t clamp = static_cast<acc_t>(scale_clamp);
    for_rows<scalar_t>(d.size(0), [&](int64_t r) {
      acc_t x[4], y[4], o[4];
      load4(pd + 4 * r, x);
      load4(pb + 4 * r, y);
      box_math::decode(x, y, wt, clamp, o);
      store4(o, po + 4 * r);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> box_decode_backward_cpu(const at::Tensor& grad_in, const at::Tensor& deltas_in,
                                                           const at::Tensor& boxes_in, c10::ArrayRef<double> w,
                                                           double scale_clamp) {
  check_pair(deltas_in, "deltas", boxes_in, "boxes");
  check_pair(grad_in, "grad", deltas_in, "deltas");
  const box_math::Weights wt = parse_weights(w);
  const at::Tensor g = grad_in.contiguous(), d = deltas_in.contiguous(), b = boxes_in.contiguous();
  at::Tensor gd = at::empty(d.sizes(), d.options()), gb = at::empty(d.sizes(), d.options());
  if (d.numel() == 0) return {gd, gb};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, d.scalar_type(), "box_decode_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const scalar_t *pg = g.data_ptr<scalar_t>(), *pd = d.data_ptr<scalar_t>(), *pb = b.data_ptr<scalar_t>();
    scalar_t *pgd = gd.data_ptr<scalar_t>(), *pgb = gb.data_ptr<scalar_t>();
    const acc_t clamp = static_cast<acc_t>(scale_clamp);
    for_rows<scalar_t>(d.size(0), [&](int64_t r) {
      acc_t gg[4], x[4], y[4], ox[4], oy[4];
      load4(pg + 4 * r, gg);
      load4(pd + 4 * r, x);
      load4(pb + 4 * r, y);
      box_math::decode_backward(gg, x, y, wt, clamp, ox, oy);
      store4(ox, pgd + 4 * r);
      store4(oy, pgb + 4 * r);
    });
  });
  return {gd, gb};
}

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) {
  m.impl("box_encode", &box_encode_cpu);
  m.impl("box_encode_backward", &box_encode_backward_cpu);
  m.impl("box_decode", &box_decode_cpu);
  m.impl("box_decode_backward", &box_decode_backward_cpu);
}

}  // namespace dapo_fast
