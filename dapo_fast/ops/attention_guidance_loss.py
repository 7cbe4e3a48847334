"""DAPO's attention-guidance loss L_A (eq. 3) over per-entity maps.

It reads heatmaps h and attention maps a ([B, E, H, W], E entities padded per sample, with
``entity_valid`` [B, E] marking the real ones) once in the forward and once in the backward; the
pairwise term uses sum_{i != j} ||a_i - a_j||^2 = 2K sum ||a_i||^2 - 2 ||sum a_i||^2, so the cost
is O(E H W) instead of the literal O(E^2 H W) double sum (the reference keeps that form).

Backends: ``cpu`` (C++), ``cuda``, ``triton``, ``reference``.
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import attention_guidance_loss as _meta
from dapo_fast.ops._reference import attention_guidance_loss as _reference

__all__ = ["attention_guidance_loss"]


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
    entity_valid = _checks.entity_maps(heatmaps, attn_maps, "attn_maps", entity_valid)
    chosen = _backend.resolve(backend, heatmaps.device)
    if chosen == "reference":
        return _reference.attention_guidance_loss(heatmaps, attn_maps, entity_valid)
    if chosen == "triton":
        from dapo_fast.ops._triton import attention_guidance_loss as _triton

        return _triton.attention_guidance_loss_triton(heatmaps, attn_maps, entity_valid)
    return torch.ops.dapo_fast.attention_guidance_loss(heatmaps, attn_maps, entity_valid)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.attention_guidance_loss.default,
                   torch.ops.dapo_fast.attention_guidance_loss_backward.default)
