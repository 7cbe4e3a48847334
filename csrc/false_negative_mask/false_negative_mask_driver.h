// Device-independent tiling of false_negative_mask (host C++, ATen only; the CPU and CUDA entry
// points plug in the kernel that thresholds and OR-reduces one product tile).
//
// Images are grouped in tiles of `tile_images`; for every pair of tiles (I, A) with I <= A one
// BLAS call gives the [|I|*K, |A|*K] dot products, and the block kernel answers the image pairs
// (i, a), i < a, inside it in both directions. Never [B, B, K, K] or [BK, BK]: one tile at a time,
// and about half of the full product thanks to the symmetry.
#pragma once
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

#include "false_negative_mask_common.h"

namespace dapo_fast {

struct FalseNegativeTile {
  at::Tensor dot;       // [ni*K, na*K] raw dot products of tile I's regions with tile A's
  int64_t i0, ni, a0, na, k;
  bool diagonal;        // I == A: only pairs i < a inside the tile
};

// feats: [B, K, D] contiguous compute dtype. Returns (inv_norm [B*K], valid uint8 [B*K]) helpers
// through the callback's captures; out is [B, B, K] bool, zero-filled here.
template <typename BlockKernel>
at::Tensor false_negative_mask_tiles(const at::Tensor& feats, int64_t tile_rows, BlockKernel&& block_kernel) {
  const int64_t b = feats.size(0), k = feats.size(1), d = feats.size(2);
  at::Tensor out = at::zeros({b, b, k}, feats.options().dtype(at::kBool));
  if (b < 2 || k == 0) return out;
  const at::Tensor flat = feats.reshape({b * k, d});
  const int64_t tile_images = std::clamp<int64_t>(tile_rows / std::max<int64_t>(k, 1), 1, b);
  at::Tensor buffer = at::empty({tile_images * k, tile_images * k}, feats.options());
  for (int64_t i0 = 0; i0 < b; i0 += tile_images) {
    const int64_t ni = std::min(tile_images, b - i0);
    for (int64_t a0 = i0; a0 < b; a0 += tile_images) {
      const int64_t na = std::min(tile_images, b - a0);
      if (a0 == i0 && ni == 1) continue;  // a single image against itself: nothing to answer
      at::Tensor dot = buffer.narrow(0, 0, ni * k).narrow(1, 0, na * k);
      at::mm_out(dot, flat.narrow(0, i0 * k, ni * k), flat.narrow(0, a0 * k, na * k).t());
      block_kernel(FalseNegativeTile{dot, i0, ni, a0, na, k, a0 == i0}, out);
    }
  }
  return out;
}

}  // namespace dapo_fast
