// Device-independent tiling of the fused pseudo-label loss (host C++, ATen ops only; the CPU
// and CUDA entry points plug in their row kernel).
//
// The phrases are processed in tiles of whole images: rows = tile_images * Q phrases against
// all B*K regions. Per tile:
//   S  = phrase_rows @ region^T            [rows, B*K]   one BLAS/cuBLAS call
//   T  = teacher logits in slots of K columns per row: the row's own image (batched product),
//        plus in "fnc" one slot per (image, other image) pair holding a false negative (batched
//        product over just those pairs)
//   row kernel: masked log-sum-exp of S and T per row, the loss, and (when gradients are
//        wanted) G = coef * (softmax_S - pi_T) / tau written over S in place
//   grad_phrase_rows = G @ region,  grad_region += G^T @ phrase_rows   (two more BLAS calls)
// So memory beyond inputs and outputs is one [rows, B*K] tile (rows chosen so it stays near
// kTileElements), never [B, B, Q, K], and the gradient needs no recomputation of the logits.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <optional>

#include "pseudo_label_contrastive_loss_common.h"

namespace dapo_fast {

// What the row kernel sees of one tile. Rows are phrases (image b0 + r / Q, phrase r % Q).
struct PseudoLabelTile {
  int64_t rows, num_q, s_cols, t_cols;
  at::Tensor s;          // [rows, s_cols] student logits * tau (raw dot products); G on return
  at::Tensor s_member;   // [tile_images or 1, s_cols] uint8: column in the student set of image r / Q
  int64_t s_member_stride;  // s_cols, or 0 when one row serves every image of the tile
  at::Tensor t;          // [rows, t_cols] raw teacher dot products over the needed columns
  at::Tensor t_member;   // [tile_images, t_cols] uint8: column in the teacher set
  at::Tensor t_column;   // [tile_images, t_cols] int64: the S column of each T column
  at::Tensor valid_row;  // [rows] uint8: phrase valid
  at::Tensor coef;       // [rows] upstream gradient per row (already divided for "mean")
  at::Tensor loss;       // [rows] output: loss per phrase (0 for skipped rows)
  double inv_tau, inv_teacher_tau;
  bool write_grad;
};

struct PseudoLabelResult {
  at::Tensor loss_rows;    // [B*Q] compute dtype
  at::Tensor grad_phrase;  // [B, Q, D] compute dtype or undefined
  at::Tensor grad_region;  // [B, K, D] compute dtype or undefined
};

// Whole images per tile: about tile_elements logits, but at least kMinTileRows phrase rows so the
// BLAS calls stay efficient and grad_region (updated once per tile) is not rewritten too often.
constexpr int64_t kMinTileRows = 256;

inline int64_t pseudo_label_tile_images(int64_t b, int64_t q, int64_t k, int64_t tile_elements) {
  const int64_t per_image = std::max<int64_t>(q * b * k, 1);
  const int64_t by_rows = (kMinTileRows + std::max<int64_t>(q, 1) - 1) / std::max<int64_t>(q, 1);
  return std::clamp<int64_t>(std::max(tile_elements / per_image, by_rows), 1, std::max<int64_t>(b, 1));
}

// ``x`` [N, D] with the rows where ``valid`` [N, 1] is false set to 0. On the CPU a scan of the row
// sums (a row holding NaN or Inf sums to NaN or Inf) copies only when such an invalid row exists:
// the answer is read for free there, and the copy of the regions would set the forward's peak
// memory. On a GPU reading the answer would stall the stream, so the copy is made every time.
inline at::Tensor zero_invalid_rows(const at::Tensor& x, const at::Tensor& valid) {
  if (x.is_cpu() && x.sum(1, /*keepdim=*/true).isfinite().logical_or(valid).all().item<bool>()) return x;
  return at::where(valid, x, at::zeros({}, x.options()));
}

// Inputs must already be contiguous and of the compute dtype (float or double); coef is the
// per-row upstream gradient [B*Q] (compute dtype) or undefined when no gradient is wanted.
template <typename RowKernel>
PseudoLabelResult pseudo_label_loss_tiles(const at::Tensor& phrase, const at::Tensor& region,
                                          const at::Tensor& teacher_phrase, const at::Tensor& teacher_region,
                                          const at::Tensor& phrase_valid, const at::Tensor& region_valid,
                                          const std::optional<at::Tensor>& fn_mask, double tau, double teacher_tau,
                                          int mode, const at::Tensor& coef, bool want_gp, bool want_gr,
                                          int64_t tile_elements, RowKernel&& row_kernel) {
  using namespace pseudo_label_math;
  const int64_t b = phrase.size(0), q = phrase.size(1), d = phrase.size(2), k = region.size(1);
  const int64_t dt = teacher_phrase.size(2);
  const auto opts = phrase.options();
  PseudoLabelResult res;
  res.loss_rows = at::zeros({b * q}, opts);
  // every row of grad_phrase is written by its tile's product; grad_region by the first tile's
  if (want_gp) res.grad_phrase = at::empty({b, q, d}, opts);
  if (want_gr) res.grad_region = at::empty({b, k, d}, opts);
  if (b * q == 0 || k == 0) {
    if (want_gp) res.grad_phrase.zero_();
    if (want_gr) res.grad_region.zero_();
    return res;
  }
  const bool write_grad = want_gp || want_gr;
  const at::Tensor p_flat = phrase.reshape({b * q, d});
  const at::Tensor r_flat = region.reshape({b * k, d});
  const at::Tensor tp_flat = teacher_phrase.reshape({b * q, dt});
  const at::Tensor valid_flat = region_valid.reshape({b * k});
  const at::Tensor valid_rows = phrase_valid.reshape({b * q}).to(at::kByte);
  const at::Tensor valid_bytes = valid_flat.to(at::kByte);
  const auto long_opts = phrase.options().dtype(at::kLong);
  const int64_t tile_images = pseudo_label_tile_images(b, q, k, tile_elements);
  at::Tensor s_buffer = at::empty({tile_images * q, b * k}, opts);
  at::Tensor grad_region_acc = want_gr ? res.grad_region.view({b * k, d}) : at::Tensor();
  // The gradient products multiply G, which is 0 in the columns of invalid regions and the rows of
  // invalid phrases, by the features; 0 * NaN is NaN, so those features enter them as zeros (they
  // take no part, as in the reference). The logits S need no such care: the row kernel reads only
  // the columns of valid regions, and rows of valid phrases.
  const at::Tensor r_grad = want_gp ? zero_invalid_rows(r_flat, valid_flat.unsqueeze(1)) : at::Tensor();
  const at::Tensor image_of_column = at::arange(b, long_opts);

  for (int64_t b0 = 0; b0 < b; b0 += tile_images) {
    const int64_t nb = std::min(tile_images, b - b0), rows = nb * q;
    const at::Tensor p_rows = p_flat.narrow(0, b0 * q, rows);
    at::Tensor s = s_buffer.narrow(0, 0, rows);
    at::mm_out(s, p_rows, r_flat.t());
    const at::Tensor tile_ids = at::arange(b0, b0 + nb, long_opts);
    const at::Tensor same = tile_ids.unsqueeze(1).eq(image_of_column.unsqueeze(0));  // [nb, B]
    at::Tensor fn_tile;
    if (fn_mask.has_value() && mode != kModeNone)
      fn_tile = fn_mask->narrow(0, b0, nb).logical_and(same.logical_not().unsqueeze(2));  // [nb, B, K]
    // student membership: one row shared by the tile's images, except in "fne" (per image)
    at::Tensor s_member;
    if (mode == kModeFne)
      s_member = valid_flat.unsqueeze(0).logical_and(fn_tile.reshape({nb, b * k}).logical_not()).to(at::kByte);
    else
      s_member = valid_bytes.unsqueeze(0);
    // Teacher logits, laid out per row as slots of K columns. Slot 0: the row's own image (one
    // batched product [nb, Q, DT] x [nb, DT, K]). "fnc" adds one slot per (image b, image a) pair
    // that holds a false negative, again one batched product over just those pairs, so the
    // teacher work grows with the number of such pairs, not with B.
    const int64_t own_rows = nb * q;
    const at::Tensor own = teacher_phrase.narrow(0, b0, nb).bmm(teacher_region.narrow(0, b0, nb).transpose(1, 2));
    const at::Tensor own_column = tile_ids.unsqueeze(1).mul(k).add(at::arange(k, long_opts).unsqueeze(0));  // [nb, K]
    const at::Tensor own_member = valid_bytes.view({b, k}).narrow(0, b0, nb);
    at::Tensor t, t_member, t_column;
    int64_t slots = 1;
    at::Tensor pair_image, pair_other, pair_slot;
    if (mode == kModeFnc) {
      const at::Tensor fn_any = fn_tile.any(2);                       // [nb, B]
      const at::Tensor pairs = fn_any.nonzero();                      // [np, 2] sorted by image
      const at::Tensor counts = fn_any.sum(1);                        // [nb]
      slots = 1 + (pairs.size(0) > 0 ? counts.max().item<int64_t>() : 0);
      pair_image = pairs.select(1, 0).contiguous();
      pair_other = pairs.select(1, 1).contiguous();
      const at::Tensor first = counts.cumsum(0).sub(counts);          // first pair of each image
      pair_slot = at::arange(pairs.size(0), long_opts).sub(first.index_select(0, pair_image)).add(1);
    }
    if (slots == 1) {
      t = own.view({own_rows, k});
      t_member = own_member;
      t_column = own_column.contiguous();
    } else {
      at::Tensor t4 = at::zeros({nb, q, slots, k}, opts);
      t4.select(2, 0).copy_(own);
      const at::Tensor blocks = teacher_phrase.narrow(0, b0, nb).index_select(0, pair_image)
                                    .bmm(teacher_region.index_select(0, pair_other).transpose(1, 2));  // [np, Q, K]
      t4.permute({0, 2, 1, 3}).index_put_({pair_image, pair_slot}, blocks);
      t = t4.view({own_rows, slots * k});
      at::Tensor m3 = at::zeros({nb, slots, k}, opts.dtype(at::kByte));
      m3.select(1, 0).copy_(own_member);
      const at::Tensor pair_member = valid_flat.view({b, k}).index_select(0, pair_other)
                                         .logical_and(fn_tile.view({nb * b, k}).index_select(
                                             0, pair_image.mul(b).add(pair_other)));
      m3.index_put_({pair_image, pair_slot}, pair_member.to(at::kByte));
      t_member = m3.view({nb, slots * k});
      at::Tensor c3 = at::zeros({nb, slots, k}, long_opts);
      c3.select(1, 0).copy_(own_column);
      c3.index_put_({pair_image, pair_slot}, pair_other.unsqueeze(1).mul(k).add(at::arange(k, long_opts).unsqueeze(0)));
      t_column = c3.view({nb, slots * k});
    }

    PseudoLabelTile tile;
    tile.rows = rows;
    tile.num_q = q;
    tile.s_cols = b * k;
    tile.t_cols = t.size(1);
    tile.s = s;
    tile.s_member = s_member;
    tile.t = t;
    tile.t_member = t_member;
    tile.t_column = t_column;
    tile.s_member_stride = s_member.size(0) == 1 ? 0 : b * k;
    tile.valid_row = valid_rows.narrow(0, b0 * q, rows);
    tile.coef = write_grad ? coef.narrow(0, b0 * q, rows) : at::Tensor();
    tile.loss = res.loss_rows.narrow(0, b0 * q, rows);
    tile.inv_tau = 1.0 / tau;
    tile.inv_teacher_tau = 1.0 / teacher_tau;
    tile.write_grad = write_grad;
    row_kernel(tile);

    if (want_gp) {
      at::Tensor gp_rows = res.grad_phrase.view({b * q, d}).narrow(0, b0 * q, rows);
      at::mm_out(gp_rows, s, r_grad);
    }
    if (want_gr) {
      const at::Tensor p_grad = zero_invalid_rows(p_rows, phrase_valid.reshape({b * q, 1}).narrow(0, b0 * q, rows));
      if (b0 == 0)
        at::mm_out(grad_region_acc, s.t(), p_grad);
      else
        grad_region_acc.addmm_(s.t(), p_grad);
    }
  }
  // Invalid phrases and regions take no part (the reference replaces them by zeros): their
  // gradient is 0, not the products above with a NaN or Inf of the other side's features.
  if (want_gp) res.grad_phrase.masked_fill_(phrase_valid.logical_not().unsqueeze(2), 0);
  if (want_gr) res.grad_region.masked_fill_(region_valid.logical_not().unsqueeze(2), 0);
  return res;
}

}  // namespace dapo_fast
