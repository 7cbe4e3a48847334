"""Soft IoU of response maps with mask proposals (PCNet), every map against every mask.

    iou       = sum(r*m) / (sum r + sum m - sum(r*m) + eps)
    half_dice = sum(r*m) / (sum r + sum m + eps)        (PCNet's public code)

Backends: ``cpu`` (C++), ``cuda``, ``reference``. Autograd to ``response``.
"""
import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import soft_iou as _meta
from dapo_fast.ops._reference import soft_iou as _reference

__all__ = ["soft_iou"]


def soft_iou(response: Tensor, masks: Tensor, variant: str = "iou", eps: float = 1e-5, *,
             backend: str = "auto") -> Tensor:
    """Args: response Tensor[B, S, H, W] float; masks Tensor[B, P, H, W] bool/uint8/float in [0, 1].

    Returns: Tensor[B, S, P] of response's dtype.
    """
    masks = _checks.response_and_masks(response, masks)
    variant = _checks.soft_iou_variant(variant)
    eps = float(eps)
    chosen = _backend.resolve(backend, response.device, has_triton=False)
    if chosen == "reference":
        return _reference.soft_iou(response, masks, variant, eps)
    return torch.ops.dapo_fast.soft_iou(response, masks, variant, eps)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.soft_iou.default, torch.ops.dapo_fast.soft_iou_backward.default)
