"""DAPO's losses in Triton: one program per (sample, block of pixels), looping over entities.

Forward programs write (fit, norm, total) partial sums per block; they are added in block order
(deterministic) and turned into the loss with the closed form of eq. 3 (see
csrc/dapo_losses/dapo_losses_common.h). Backward programs recompute S = sum of valid a_i for
their block and write both gradients in one pass.
"""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

BLOCK = 1024


@triton.jit
def _guidance_forward_kernel(h_ptr, a_ptr, valid_ptr, part_ptr, E, P, NB, BLOCK: tl.constexpr):
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
def _guidance_backward_kernel(h_ptr, a_ptr, valid_ptr, coef_ptr, gh_ptr, ga_ptr, E, P, WANT_H: tl.constexpr,
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


@triton.jit
def _guided_forward_kernel(h_ptr, a_ptr, valid_ptr, part_ptr, E, P, NB, BLOCK: tl.constexpr):
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
def _guided_backward_kernel(grad_ptr, h_ptr, a_ptr, valid_ptr, gh_ptr, E, P, BLOCK: tl.constexpr):
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


def _prepare(h, a, valid):
    pixels = h.shape[2] * h.shape[3]
    return h.contiguous(), a.contiguous(), valid.contiguous().view(torch.uint8), pixels


@triton_op("dapo_fast::attention_guidance_loss_triton", mutates_args=())
def attention_guidance_loss_triton(heatmaps: torch.Tensor, attn: torch.Tensor,
                                   entity_valid: torch.Tensor) -> torch.Tensor:
    h, a, valid, pixels = _prepare(heatmaps, attn, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    blocks = max(triton.cdiv(pixels, BLOCK), 1)
    partials = torch.zeros((batch, blocks, 3), dtype=torch.float32, device=h.device)
    if batch and entities and pixels:
        wrap_triton(_guidance_forward_kernel)[(batch, blocks)](h, a, valid, partials, entities, pixels, blocks,
                                                               BLOCK=BLOCK)
    fit, norm, total = partials.double().sum(1).unbind(-1)
    k = entity_valid.sum(1).double()
    pairs = k * (k - 1)
    loss = torch.where(k >= 2, ((k - 1) * fit - 2 * k * norm + 2 * total) / pairs.clamp(min=1), 0.0)
    return loss.to(heatmaps.dtype)


@triton_op("dapo_fast::attention_guidance_loss_backward_triton", mutates_args=())
def attention_guidance_loss_backward_triton(grad: torch.Tensor, heatmaps: torch.Tensor, attn: torch.Tensor,
                                            entity_valid: torch.Tensor,
                                            heatmaps_grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
    h, a, valid, pixels = _prepare(heatmaps, attn, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    grad_a = torch.empty_like(h)
    grad_h = torch.empty_like(h) if heatmaps_grad else h.new_empty((0,))
    if batch and entities and pixels:
        k = entity_valid.sum(1).double()
        c = torch.where(k >= 2, grad.double() / (k * (k - 1)).clamp(min=1), 0.0)
        coef = torch.stack([2 * (k - 1) * c, -4 * k * c, 4 * c], dim=1).float().contiguous()
        grid = (batch, triton.cdiv(pixels, BLOCK))
        wrap_triton(_guidance_backward_kernel)[grid](h, a, valid, coef, grad_h if heatmaps_grad else grad_a, grad_a,
                                                     entities, pixels, WANT_H=heatmaps_grad, BLOCK=BLOCK)
    return grad_h, grad_a


@triton_op("dapo_fast::diffusion_guided_loss_triton", mutates_args=())
def diffusion_guided_loss_triton(heatmaps: torch.Tensor, targets: torch.Tensor,
                                 entity_valid: torch.Tensor) -> torch.Tensor:
    h, a, valid, pixels = _prepare(heatmaps, targets, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    blocks = max(triton.cdiv(pixels, BLOCK), 1)
    partials = torch.zeros((batch, blocks), dtype=torch.float32, device=h.device)
    if batch and entities and pixels:
        wrap_triton(_guided_forward_kernel)[(batch, blocks)](h, a, valid, partials, entities, pixels, blocks,
                                                             BLOCK=BLOCK)
    return partials.double().sum(1).to(heatmaps.dtype)


@triton_op("dapo_fast::diffusion_guided_loss_backward_triton", mutates_args=())
def diffusion_guided_loss_backward_triton(grad: torch.Tensor, heatmaps: torch.Tensor, targets: torch.Tensor,
                                          entity_valid: torch.Tensor) -> torch.Tensor:
    h, a, valid, pixels = _prepare(heatmaps, targets, entity_valid)
    batch, entities = h.shape[0], h.shape[1]
    grad_h = torch.empty_like(h)
    if batch and entities and pixels:
        wrap_triton(_guided_backward_kernel)[(batch, triton.cdiv(pixels, BLOCK))](
            grad.float().contiguous(), h, a, valid, grad_h, entities, pixels, BLOCK=BLOCK)
    return grad_h


def _register():
    from dapo_fast.ops.dapo_losses import _fake_guidance_backward, _fake_guided_backward, _fake_loss

    attention_guidance_loss_triton.register_fake(_fake_loss)
    diffusion_guided_loss_triton.register_fake(_fake_loss)
    attention_guidance_loss_backward_triton.register_fake(_fake_guidance_backward)
    diffusion_guided_loss_backward_triton.register_fake(_fake_guided_backward)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def guidance_backward(ctx, grad):
        h, a, valid = ctx.saved_tensors
        want_h = ctx.needs_input_grad[0]
        grad_h, grad_a = attention_guidance_loss_backward_triton(grad, h, a, valid, want_h)
        return (grad_h if want_h else None), grad_a, None

    def guided_backward(ctx, grad):
        h, a, valid = ctx.saved_tensors
        grad_h = diffusion_guided_loss_backward_triton(grad, h, a, valid)
        return grad_h, (-grad_h if ctx.needs_input_grad[1] else None), None

    attention_guidance_loss_triton.register_autograd(guidance_backward, setup_context=setup_context)
    diffusion_guided_loss_triton.register_autograd(guided_backward, setup_context=setup_context)


_register()


def attention_guidance_loss(heatmaps, attn, entity_valid):
    return attention_guidance_loss_triton(heatmaps, attn, entity_valid)


def diffusion_guided_loss(heatmaps, targets, entity_valid):
    return diffusion_guided_loss_triton(heatmaps, targets, entity_valid)
