"""DAPO's diffusion-guided loss (eq. 5) in Triton: one program per (sample, block of pixels),
looping over entities. Forward programs write a partial sum per block, added in block order
(deterministic); the backward writes the heatmap gradient in one pass.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import diffusion_guided_loss as _meta
from dapo_fast.ops._triton import entity_map_operands

BLOCK = 1024


@triton.jit
def _forward_kernel(h_ptr, a_ptr, valid_ptr, part_ptr, E, P, NB, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    pm = offs < P
    fit = tl.zeros([BLOCK], dtype=tl.float32)
    for e in range(E):
        v = tl.load(valid_ptr + b * E + e).to(tl.float32)
        base = (b * E + e) * P
        d = (tl.load(h_ptr + base + offs, mask=pm, other=0.0).to(tl.float32)
             - tl.load(a_ptr + base + offs, mask=pm, other=0.0).to(tl.float32)) * v
        fit += d * d
    tl.store(part_ptr + b * NB + blk, tl.sum(fit, axis=0))


@triton.jit
def _backward_kernel(grad_ptr, h_ptr, a_ptr, valid_ptr, gh_ptr, E, P, BLOCK: tl.constexpr):
    b = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    pm = offs < P
    g = 2.0 * tl.load(grad_ptr + b).to(tl.float32)
    for e in range(E):
        v = tl.load(valid_ptr + b * E + e) != 0
        base = (b * E + e) * P
        d = (tl.load(h_ptr + base + offs, mask=pm, other=0.0).to(tl.float32)
             - tl.load(a_ptr + base + offs, mask=pm, other=0.0).to(tl.float32))
        tl.store(gh_ptr + base + offs, tl.where(v, g * d, 0.0).to(gh_ptr.dtype.element_ty), mask=pm)


@triton_op("dapo_fast::diffusion_guided_loss_triton", mutates_args=())
def diffusion_guided_loss_triton(heatmaps: torch.Tensor, targets: torch.Tensor,
                                 entity_valid: torch.Tensor) -> torch.Tensor:
    h, a, valid, pixels = entity_map_operands(heatmaps, targets, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    blocks = max(triton.cdiv(pixels, BLOCK), 1)
    partials = torch.zeros((batch, blocks), dtype=torch.float32, device=h.device)
    if batch and entities and pixels:
        wrap_triton(_forward_kernel)[(batch, blocks)](h, a, valid, partials, entities, pixels, blocks, BLOCK=BLOCK)
    return partials.double().sum(1).to(heatmaps.dtype)


@triton_op("dapo_fast::diffusion_guided_loss_backward_triton", mutates_args=())
def diffusion_guided_loss_backward_triton(grad: torch.Tensor, heatmaps: torch.Tensor, targets: torch.Tensor,
                                          entity_valid: torch.Tensor) -> torch.Tensor:
    h, a, valid, pixels = entity_map_operands(heatmaps, targets, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    grad_h = torch.empty_like(h)
    if batch and entities and pixels:
        wrap_triton(_backward_kernel)[(batch, triton.cdiv(pixels, BLOCK))](
            grad.float().contiguous(), h, a, valid, grad_h, entities, pixels, BLOCK=BLOCK)
    return grad_h


_meta.register(diffusion_guided_loss_triton, diffusion_guided_loss_backward_triton)
