"""region_ambiguity in Triton: one program per response map, looping over proposals and over
pixel tiles (so any H x W works). Same one-pass design as the C++ kernel: the forward also
writes d ambiguity / d response when asked, and the backward is a broadcast multiply.
Masks are read as floats of the response dtype (the wrapper converts bool/uint8)."""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import region_ambiguity as _meta


@triton.jit
def _kernel(r_ptr, m_ptr, valid_ptr, amb_ptr, fg_ptr, field_ptr, S, P, HW, eps,
            IOU: tl.constexpr, WITH_GRAD: tl.constexpr, ACC: tl.constexpr, BLOCK: tl.constexpr):
    bs = tl.program_id(0)
    b = bs // S
    r_base = r_ptr + bs * HW
    m_base = m_ptr + b * P * HW
    offs = tl.arange(0, BLOCK)
    # foreground: the valid proposal with the highest max(r * m), lowest index on ties
    fg = -1
    fg_score = 0.0
    for p in range(P):
        ok = tl.load(valid_ptr + b * P + p) != 0
        best = tl.full([BLOCK], float("-inf"), ACC)
        for start in range(0, HW, BLOCK):
            idx = start + offs
            inside = idx < HW
            r = tl.load(r_base + idx, mask=inside, other=0.0).to(ACC)
            m = tl.load(m_base + p * HW + idx, mask=inside, other=0.0).to(ACC)
            best = tl.maximum(best, tl.where(inside, r * m, float("-inf")))
        score = tl.max(best, axis=0)
        take = ok & ((fg < 0) | (score > fg_score))
        fg = tl.where(take, p, fg)
        fg_score = tl.where(take, score, fg_score)
    # sums with the foreground mask and the union of the other valid masks
    s_if = tl.zeros([BLOCK], ACC)
    s_f = tl.zeros([BLOCK], ACC)
    s_ib = tl.zeros([BLOCK], ACC)
    s_b = tl.zeros([BLOCK], ACC)
    s_r = tl.zeros([BLOCK], ACC)
    for start in range(0, HW, BLOCK):
        idx = start + offs
        inside = idx < HW
        r = tl.load(r_base + idx, mask=inside, other=0.0).to(ACC)
        bg = tl.zeros([BLOCK], ACC)
        fm = tl.zeros([BLOCK], ACC)
        for p in range(P):
            ok = tl.load(valid_ptr + b * P + p) != 0
            m = tl.load(m_base + p * HW + idx, mask=inside, other=0.0).to(ACC)
            is_fg = p == fg
            fm = tl.where(is_fg, m, fm)
            bg = tl.where(ok & (p != fg), tl.maximum(bg, m), bg)
        s_if += r * fm
        s_f += fm
        s_ib += r * bg
        s_b += bg
        s_r += r
    inter_f = tl.sum(s_if, axis=0)
    inter_b = tl.sum(s_ib, axis=0)
    sum_r = tl.sum(s_r, axis=0)
    if IOU:
        den_f = sum_r + tl.sum(s_f, axis=0) - inter_f + eps
        den_b = sum_r + tl.sum(s_b, axis=0) - inter_b + eps
    else:
        den_f = sum_r + tl.sum(s_f, axis=0) + eps
        den_b = sum_r + tl.sum(s_b, axis=0) + eps
    tl.store(amb_ptr + bs, (1.0 - (inter_f / den_f - inter_b / den_b)).to(amb_ptr.dtype.element_ty))
    tl.store(fg_ptr + bs, fg.to(tl.int64))
    if WITH_GRAD:
        c_f = inter_f / (den_f * den_f)
        c_b = inter_b / (den_b * den_b)
        if IOU:
            a_f = 1.0 / den_f + c_f
            a_b = 1.0 / den_b + c_b
        else:
            a_f = 1.0 / den_f
            a_b = 1.0 / den_b
        for start in range(0, HW, BLOCK):
            idx = start + offs
            inside = idx < HW
            bg = tl.zeros([BLOCK], ACC)
            fm = tl.zeros([BLOCK], ACC)
            for p in range(P):
                ok = tl.load(valid_ptr + b * P + p) != 0
                m = tl.load(m_base + p * HW + idx, mask=inside, other=0.0).to(ACC)
                fm = tl.where(p == fg, m, fm)
                bg = tl.where(ok & (p != fg), tl.maximum(bg, m), bg)
            g = bg * a_b - fm * a_f + (c_f - c_b)
            tl.store(field_ptr + bs * HW + idx, g.to(field_ptr.dtype.element_ty), mask=inside)


@triton_op("dapo_fast::region_ambiguity_triton", mutates_args=())
def region_ambiguity_triton(response: torch.Tensor, masks: torch.Tensor, mask_valid: torch.Tensor, variant: str,
                            eps: float, with_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    b, s, h, w = response.shape
    p = masks.shape[1]
    ambiguity = response.new_empty((b, s))
    foreground = response.new_empty((b, s), dtype=torch.int64)
    field = response.new_empty(response.shape) if with_grad else response.new_empty((0,))
    if b * s == 0:
        return ambiguity, foreground, field
    r = response.contiguous()
    m = masks.to(response.dtype).contiguous()
    valid = mask_valid.to(torch.uint8).contiguous()
    hw = h * w
    block = min(triton.next_power_of_2(max(hw, 1)), 1024)
    acc = tl.float64 if response.dtype == torch.float64 else tl.float32
    wrap_triton(_kernel)[(b * s,)](r, m, valid, ambiguity, foreground, field if with_grad else r, s, p, hw, eps,
                                   IOU=variant == "iou", WITH_GRAD=with_grad, ACC=acc, BLOCK=block)
    return ambiguity, foreground, field


_meta.register(region_ambiguity_triton)
