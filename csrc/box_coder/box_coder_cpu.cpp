// box_encode / box_decode CPU kernels (and their backward): row-wise, parallel over rows.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include "../common/grain.h"
#include "../common/parallel.h"
#include "box_coder_prepare.h"

namespace dapo_fast {
namespace {

// Runs f(r) for every row r, in parallel.
template <typename scalar_t, typename F>
void for_rows(int64_t rows, F&& f) {
  dapo_fast::parallel_for(0, rows, grain_for(40), [&](int64_t begin, int64_t end) {
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

struct CpuKernels {
  static void encode(const BoxPair& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "box_encode_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t *ps = p.x.data_ptr<scalar_t>(), *pt = p.y.data_ptr<scalar_t>();
      scalar_t* po = p.out.data_ptr<scalar_t>();
      for_rows<scalar_t>(p.x.size(0), [&](int64_t r) {
        acc_t a[4], b[4], o[4];
        load4(ps + 4 * r, a);
        load4(pt + 4 * r, b);
        box_math::encode(a, b, p.weights, o);
        store4(o, po + 4 * r);
      });
    });
  }

  static void encode_backward(const BoxPairBackward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "box_encode_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t *pg = p.grad.data_ptr<scalar_t>(), *ps = p.x.data_ptr<scalar_t>(), *pt = p.y.data_ptr<scalar_t>();
      scalar_t *pgs = p.grad_x.data_ptr<scalar_t>(), *pgt = p.grad_y.data_ptr<scalar_t>();
      for_rows<scalar_t>(p.x.size(0), [&](int64_t r) {
        acc_t gg[4], a[4], b[4], oa[4], ob[4];
        load4(pg + 4 * r, gg);
        load4(ps + 4 * r, a);
        load4(pt + 4 * r, b);
        box_math::encode_backward(gg, a, b, p.weights, oa, ob);
        store4(oa, pgs + 4 * r);
        store4(ob, pgt + 4 * r);
      });
    });
  }

  static void decode(const BoxPair& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "box_decode_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t *pd = p.x.data_ptr<scalar_t>(), *pb = p.y.data_ptr<scalar_t>();
      scalar_t* po = p.out.data_ptr<scalar_t>();
      const acc_t clamp = static_cast<acc_t>(p.scale_clamp);
      for_rows<scalar_t>(p.x.size(0), [&](int64_t r) {
        acc_t x[4], y[4], o[4];
        load4(pd + 4 * r, x);
        load4(pb + 4 * r, y);
        box_math::decode(x, y, p.weights, clamp, o);
        store4(o, po + 4 * r);
      });
    });
  }

  static void decode_backward(const BoxPairBackward& p) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, p.x.scalar_type(), "box_decode_backward_cpu", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const scalar_t *pg = p.grad.data_ptr<scalar_t>(), *pd = p.x.data_ptr<scalar_t>(), *pb = p.y.data_ptr<scalar_t>();
      scalar_t *pgd = p.grad_x.data_ptr<scalar_t>(), *pgb = p.grad_y.data_ptr<scalar_t>();
      const acc_t clamp = static_cast<acc_t>(p.scale_clamp);
      for_rows<scalar_t>(p.x.size(0), [&](int64_t r) {
        acc_t gg[4], x[4], y[4], ox[4], oy[4];
        load4(pg + 4 * r, gg);
        load4(pd + 4 * r, x);
        load4(pb + 4 * r, y);
        box_math::decode_backward(gg, x, y, p.weights, clamp, ox, oy);
        store4(ox, pgd + 4 * r);
        store4(oy, pgb + 4 * r);
      });
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(dapo_fast, CPU, m) { register_box_coder<CpuKernels>(m); }

}  // namespace dapo_fast
