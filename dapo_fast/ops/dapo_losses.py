"""DAPO's losses over per-entity maps: the attention-guidance loss L_A (eq. 3) and the
diffusion-guided loss L_D (eq. 5).

Both read heatmaps h and attention maps a ([B, E, H, W], E entities padded per sample, with
``entity_valid`` [B, E] marking the real ones) once in the forward and once in the backward;
L_A's pairwise term uses sum_{i != j} ||a_i - a_j||^2 = 2K sum ||a_i||^2 - 2 ||sum a_i||^2, so the
cost is O(E H W) instead of the literal O(E^2 H W) double sum (the reference keeps that form).

Backends: ``cpu`` (C++), ``cuda``, ``triton``, ``reference``.
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._reference import dapo_losses as _reference

__all__ = ["attention_guidance_loss", "diffusion_guided_loss"]

REDUCTIONS = ("mean", "sum", "none")


def _check(heatmaps: Tensor, maps: Tensor, maps_name: str, entity_valid: Optional[Tensor]) -> Tensor:
    _checks.tensor(heatmaps, "heatmaps", dim=4)
    _checks.tensor(maps, maps_name, dim=4, device=heatmaps.device)
    _checks.same_dtype(heatmaps, "heatmaps", maps, maps_name)
    if maps.shape != heatmaps.shape:
        raise ValueError(f"heatmaps and {maps_name} must have the same shape [B, E, H, W], got "
                         f"{tuple(heatmaps.shape)} and {tuple(maps.shape)}")
    batch, entities = heatmaps.shape[0], heatmaps.shape[1]
    if entity_valid is None:
        return torch.ones((batch, entities), dtype=torch.bool, device=heatmaps.device)
    _checks.tensor(entity_valid, "entity_valid", shape=(batch, entities), dtypes=None, device=heatmaps.device)
    if entity_valid.dtype != torch.bool:
        raise TypeError(f"entity_valid must be a bool tensor, got {entity_valid.dtype}")
    return entity_valid


def attention_guidance_loss(heatmaps: Tensor, attn_maps: Tensor, entity_valid: Optional[Tensor] = None, *,
                            backend: str = "auto") -> Tensor:
    """DAPO eq. 3 per sample: 1/|P| sum_{(i,j) in P} (||h_i - a_i||_F^2 - ||a_i - a_j||_F^2).

    Args:
        heatmaps: Tensor[B, E, H, W] grounder heatmaps h (a gradient flows to them if they
            require one; DAPO treats them as constants).
        attn_maps: Tensor[B, E, H, W] aggregated cross-attention maps a (the gradient target).
        entity_valid: bool Tensor[B, E]; P is the set of ordered pairs of distinct valid
            entities. A sample with fewer than two valid entities gives 0 and zero gradient.
            Default: all valid.
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        Tensor[B], dtype of heatmaps.
    """
    entity_valid = _check(heatmaps, attn_maps, "attn_maps", entity_valid)
    chosen = _backend.resolve(backend, heatmaps.device)
    if chosen == "reference":
        return _reference.attention_guidance_loss(heatmaps, attn_maps, entity_valid)
    if chosen == "triton":
        from dapo_fast.ops._triton import dapo_losses as _triton

        return _triton.attention_guidance_loss(heatmaps, attn_maps, entity_valid)
    return torch.ops.dapo_fast.attention_guidance_loss(heatmaps, attn_maps, entity_valid)


def diffusion_guided_loss(heatmaps: Tensor, attn_targets: Tensor, entity_valid: Optional[Tensor] = None,
                          reduction: str = "mean", *, backend: str = "auto") -> Tensor:
    """DAPO eq. 5: L_D = 1/N sum_n sum_k ||h_k^(n) - a_k^(n)||_F^2 over valid entities.

    Args:
        heatmaps: Tensor[B, E, H, W] grounder heatmaps (gradient flows to them).
        attn_targets: Tensor[B, E, H, W] attention maps of the final denoising step (targets;
            if they require grad they get the opposite gradient).
        entity_valid: bool Tensor[B, E] (default: all valid).
        reduction: "mean" (divide by the batch size N, as eq. 5), "sum", or "none" ([B]).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    entity_valid = _check(heatmaps, attn_targets, "attn_targets", entity_valid)
    chosen = _backend.resolve(backend, heatmaps.device)
    if chosen == "reference":
        per_sample = _reference.diffusion_guided_loss(heatmaps, attn_targets, entity_valid)
    elif chosen == "triton":
        from dapo_fast.ops._triton import dapo_losses as _triton

        per_sample = _triton.diffusion_guided_loss(heatmaps, attn_targets, entity_valid)
    else:
        per_sample = torch.ops.dapo_fast.diffusion_guided_loss(heatmaps, attn_targets, entity_valid)
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    return total / heatmaps.shape[0] if reduction == "mean" else total


# ---- dispatcher registration of the compiled ops: fake (meta) impls and autograd --------------

def _fake_loss(heatmaps, maps, entity_valid):
    torch._check(heatmaps.dim() == 4, lambda: "heatmaps must have 4 dimensions")
    return heatmaps.new_empty((heatmaps.shape[0],))


def _fake_guidance_backward(grad, heatmaps, attn, entity_valid, heatmaps_grad):
    grad_h = heatmaps.new_empty(heatmaps.shape) if heatmaps_grad else heatmaps.new_empty((0,))
    return grad_h, attn.new_empty(attn.shape)


def _fake_guided_backward(grad, heatmaps, targets, entity_valid):
    return heatmaps.new_empty(heatmaps.shape)


def _setup_context(ctx, inputs, output):
    heatmaps, maps, entity_valid = inputs
    ctx.save_for_backward(heatmaps, maps, entity_valid)


def _guidance_backward(ctx, grad):
    heatmaps, attn, entity_valid = ctx.saved_tensors
    want_h = ctx.needs_input_grad[0]
    grad_h, grad_a = torch.ops.dapo_fast.attention_guidance_loss_backward(grad, heatmaps, attn, entity_valid, want_h)
    return (grad_h if want_h else None), grad_a, None


def _guided_backward(ctx, grad):
    heatmaps, targets, entity_valid = ctx.saved_tensors
    grad_h = torch.ops.dapo_fast.diffusion_guided_loss_backward(grad, heatmaps, targets, entity_valid)
    return grad_h, (-grad_h if ctx.needs_input_grad[1] else None), None


if _extension.HAS_C:
    for _name in ("attention_guidance_loss", "diffusion_guided_loss"):
        torch.library.register_fake(f"dapo_fast::{_name}", _fake_loss)
    torch.library.register_fake("dapo_fast::attention_guidance_loss_backward", _fake_guidance_backward)
    torch.library.register_fake("dapo_fast::diffusion_guided_loss_backward", _fake_guided_backward)
    torch.library.register_autograd("dapo_fast::attention_guidance_loss", _guidance_backward,
                                    setup_context=_setup_context)
    torch.library.register_autograd("dapo_fast::diffusion_guided_loss", _guided_backward,
                                    setup_context=_setup_context)
