"""DAPO's diffusion-guided loss L_D (eq. 5) over per-entity maps.

It reads heatmaps h and the attention maps a of the final denoising step ([B, E, H, W], E entities
padded per sample, with ``entity_valid`` [B, E] marking the real ones) once in the forward and
once in the backward.

Backends: ``cpu`` (C++), ``cuda``, ``triton``, ``reference``.
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import diffusion_guided_loss as _meta
from dapo_fast.ops._reference import diffusion_guided_loss as _reference

__all__ = ["diffusion_guided_loss"]

REDUCTIONS = ("mean", "sum", "none")


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
    entity_valid = _checks.entity_maps(heatmaps, attn_targets, "attn_targets", entity_valid)
    chosen = _backend.resolve(backend, heatmaps.device)
    if chosen == "reference":
        per_sample = _reference.diffusion_guided_loss(heatmaps, attn_targets, entity_valid)
    elif chosen == "triton":
        from dapo_fast.ops._triton import diffusion_guided_loss as _triton

        per_sample = _triton.diffusion_guided_loss_triton(heatmaps, attn_targets, entity_valid)
    else:
        per_sample = torch.ops.dapo_fast.diffusion_guided_loss(heatmaps, attn_targets, entity_valid)
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    return total / heatmaps.shape[0] if reduction == "mean" else total


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.diffusion_guided_loss.default,
                   torch.ops.dapo_fast.diffusion_guided_loss_backward.default)
