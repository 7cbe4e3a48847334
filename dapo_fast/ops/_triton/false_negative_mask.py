"""false_negative_mask in Triton: one program per image pair (i, a) with i < a computes the K x K
cosine block with tl.dot (looping over D), thresholds it and OR-reduces it in both directions,
writing out[i, a, :] and out[a, i, :]. Programs with a <= i return at once (symmetry)."""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import false_negative_mask as _meta

_EPS = 1e-12


@triton.jit
def _mask_kernel(f_ptr, valid_ptr, out_ptr, B, K, D, threshold, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr):
    i = tl.program_id(0)
    a = tl.program_id(1)
    if a > i:
        k = tl.arange(0, BLOCK_K)
        k_ok = k < K
        dots = tl.zeros([BLOCK_K, BLOCK_K], dtype=tl.float32)
        sq_i = tl.zeros([BLOCK_K], dtype=tl.float32)
        sq_a = tl.zeros([BLOCK_K], dtype=tl.float32)
        for d0 in range(0, D, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            m = k_ok[:, None] & (d < D)[None, :]
            fi = tl.load(f_ptr + (i * K + k)[:, None] * D + d[None, :], mask=m, other=0.0)
            fa = tl.load(f_ptr + (a * K + k)[:, None] * D + d[None, :], mask=m, other=0.0)
            dots += tl.dot(fi, tl.trans(fa), input_precision="ieee")
            sq_i += tl.sum(fi * fi, 1)
            sq_a += tl.sum(fa * fa, 1)
        inv_i = 1.0 / tl.maximum(tl.sqrt(sq_i), _EPS)
        inv_a = 1.0 / tl.maximum(tl.sqrt(sq_a), _EPS)
        vi = (tl.load(valid_ptr + i * K + k, mask=k_ok, other=0) != 0) & k_ok
        va = (tl.load(valid_ptr + a * K + k, mask=k_ok, other=0) != 0) & k_ok
        sim = dots * inv_i[:, None] * inv_a[None, :]
        hit = ((sim > threshold) & vi[:, None] & va[None, :]).to(tl.int32)
        tl.store(out_ptr + (i * B + a) * K + k, tl.max(hit, 0).to(tl.int8), mask=k_ok)  # OR over i's regions
        tl.store(out_ptr + (a * B + i) * K + k, tl.max(hit, 1).to(tl.int8), mask=k_ok)  # OR over a's regions


@triton_op("dapo_fast::false_negative_mask_triton", mutates_args=())
def false_negative_mask_triton(region_feats: torch.Tensor, region_valid: torch.Tensor,
                               threshold: float) -> torch.Tensor:
    b, k, d = region_feats.shape
    out = torch.zeros((b, b, k), dtype=torch.int8, device=region_feats.device)
    if b > 1 and k > 0:
        feats = region_feats.to(torch.float32).contiguous()
        block_k = max(16, triton.next_power_of_2(k))
        block_d = max(16, min(64, triton.next_power_of_2(max(d, 1))))
        wrap_triton(_mask_kernel)[(b, b)](feats, region_valid.to(torch.uint8).contiguous(), out, b, k, d,
                                          threshold, BLOCK_K=block_k, BLOCK_D=block_d)
    return out.bool()


_meta.register(false_negative_mask_triton)
