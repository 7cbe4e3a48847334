"""Soft IoU of response maps with mask proposals (PCNet), every map against every mask.

    iou       = sum(r*m) / (sum r + sum m - sum(r*m) + eps)
    half_dice = sum(r*m) / (sum r + sum m + eps)        (PCNet's public code)

Backends: ``cpu`` (C++), ``cuda``, ``reference``. Autograd to ``response``.
"""
import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _pcnet_args
from dapo_fast.ops._reference import pcnet as _reference

__all__ = ["soft_iou"]


def soft_iou(response: Tensor, masks: Tensor, variant: str = "iou", eps: float = 1e-5, *,
             backend: str = "auto") -> Tensor:
    """Args: response Tensor[B, S, H, W] float; masks Tensor[B, P, H, W] bool/uint8/float in [0, 1].

    Returns: Tensor[B, S, P] of response's dtype.
    """
    masks = _pcnet_args.response_and_masks(response, masks)
    variant = _pcnet_args.variant_name(variant)
    eps = float(eps)
    chosen = _backend.resolve(backend, response.device, has_triton=False)
    if chosen == "reference":
        return _reference.soft_iou(response, masks, variant, eps)
    return torch.ops.dapo_fast.soft_iou(response, masks, variant, eps)


def _fake(response, masks, variant, eps):
    return response.new_empty((response.shape[0], response.shape[1], masks.shape[1]))


def _fake_backward(grad, response, masks, variant, eps):
    return torch.empty_like(response, memory_format=torch.contiguous_format)


def _setup_context(ctx, inputs, output):
    response, masks, variant, eps = inputs
    ctx.save_for_backward(response, masks)
    ctx.args = (variant, eps)


def _backward(ctx, grad):
    response, masks = ctx.saved_tensors
    return torch.ops.dapo_fast.soft_iou_backward(grad, response, masks, *ctx.args), None, None, None


if _extension.HAS_C:
    torch.library.register_fake("dapo_fast::soft_iou", _fake)
    torch.library.register_fake("dapo_fast::soft_iou_backward", _fake_backward)
    torch.library.register_autograd("dapo_fast::soft_iou", _backward, setup_context=_setup_context)
