"""DAPO's attention-guidance loss (eq. 3) in Triton: one program per (sample, block of pixels),
looping over entities.

Forward programs write (fit, norm, total) partial sums per block; they are added in block order
(deterministic) and turned into the loss with the closed form of eq. 3 (as the C++ kernels in
csrc/attention_guidance_loss/ do). Backward programs recompute S = sum of valid a_i for their
block and write both gradients in one pass.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import attention_guidance_loss as _meta
from dapo_fast.ops._triton import entity_map_operands

BLOCK = 1024


@triton.jit
def _forward_kernel(h_ptr, a_ptr, valid_ptr, part_ptr, E, P, NB, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    pm = offs < P
    s = tl.zeros([BLOCK], dtype=tl.float32)
    fit = tl.zeros([BLOCK], dtype=tl.float32)
    norm = tl.zeros([BLOCK], dtype=tl.float32)
    for e in range(E):
        v = tl.load(valid_ptr + b * E + e).to(tl.float32)
        base = (b * E + e) * P
        a = tl.load(a_ptr + base + offs, mask=pm, other=0.0).to(tl.float32) * v
        h = tl.load(h_ptr + base + offs, mask=pm, other=0.0).to(tl.float32) * v
        s += a
        fit += (h - a) * (h - a)
        norm += a * a
    out = part_ptr + (b * NB + blk) * 3
    tl.store(out, tl.sum(fit, axis=0))
    tl.store(out + 1, tl.sum(norm, axis=0))
    tl.store(out + 2, tl.sum(s * s, axis=0))


@triton.jit
def _backward_kernel(h_ptr, a_ptr, valid_ptr, coef_ptr, gh_ptr, ga_ptr, E, P, WANT_H: tl.constexpr,
                              BLOCK: tl.constexpr):
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    pm = offs < P
    s = tl.zeros([BLOCK], dtype=tl.float32)
    for e in range(E):
        v = tl.load(valid_ptr + b * E + e).to(tl.float32)
        s += tl.load(a_ptr + (b * E + e) * P + offs, mask=pm, other=0.0).to(tl.float32) * v
    ch = tl.load(coef_ptr + b * 3)
    ca = tl.load(coef_ptr + b * 3 + 1)
    cs = tl.load(coef_ptr + b * 3 + 2)
    for e in range(E):
        v = tl.load(valid_ptr + b * E + e) != 0
        base = (b * E + e) * P
        a = tl.load(a_ptr + base + offs, mask=pm, other=0.0).to(tl.float32)
        h = tl.load(h_ptr + base + offs, mask=pm, other=0.0).to(tl.float32)
        ga = tl.where(v, ch * (a - h) + ca * a + cs * s, 0.0)
        tl.store(ga_ptr + base + offs, ga.to(ga_ptr.dtype.element_ty), mask=pm)
        if WANT_H:
            gh = tl.where(v, ch * (h - a), 0.0)
            tl.store(gh_ptr + base + offs, gh.to(gh_ptr.dtype.element_ty), mask=pm)


@triton_op("dapo_fast::attention_guidance_loss_triton", mutates_args=())
def attention_guidance_loss_triton(heatmaps: torch.Tensor, attn: torch.Tensor,
                                   entity_valid: torch.Tensor) -> torch.Tensor:
    h, a, valid, pixels = entity_map_operands(heatmaps, attn, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    blocks = max(triton.cdiv(pixels, BLOCK), 1)
    partials = torch.zeros((batch, blocks, 3), dtype=torch.float32, device=h.device)
    if batch and entities and pixels:
        wrap_triton(_forward_kernel)[(batch, blocks)](h, a, valid, partials, entities, pixels, blocks, BLOCK=BLOCK)
    fit, norm, total = partials.double().sum(1).unbind(-1)
    k = entity_valid.sum(1).double()
    pairs = k * (k - 1)
    loss = torch.where(k >= 2, ((k - 1) * fit - 2 * k * norm + 2 * total) / pairs.clamp(min=1), 0.0)
    return loss.to(heatmaps.dtype)


@triton_op("dapo_fast::attention_guidance_loss_backward_triton", mutates_args=())
def attention_guidance_loss_backward_triton(grad: torch.Tensor, heatmaps: torch.Tensor, attn: torch.Tensor,
                                            entity_valid: torch.Tensor,
                                            heatmaps_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    h, a, valid, pixels = entity_map_operands(heatmaps, attn, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    grad_a = torch.empty_like(h)
    grad_h = torch.empty_like(h) if heatmaps_grad else h.new_empty((0,))
    if batch and entities and pixels:
        k = entity_valid.sum(1).double()
        c = torch.where(k >= 2, grad.double() / (k * (k - 1)).clamp(min=1), 0.0)
        coef = torch.stack([2 * (k - 1) * c, -4 * k * c, 4 * c], dim=1).float().contiguous()
        grid = (batch, triton.cdiv(pixels, BLOCK))
        wrap_triton(_backward_kernel)[grid](h, a, valid, coef, grad_h if heatmaps_grad else grad_a, grad_a,
                                            entities, pixels, WANT_H=heatmaps_grad, BLOCK=BLOCK)
    return grad_h, grad_a


_meta.register(attention_guidance_loss_triton, attention_guidance_loss_backward_triton)
