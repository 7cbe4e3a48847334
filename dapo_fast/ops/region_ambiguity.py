"""PCNet's region ambiguity in one pass (alignment, foreground, background union, soft IoUs).

For each response map r (stage/phrase s of image b):
    scores     s_p = max(r * m_p) over valid masks p
    foreground f = argmax_p s_p          (lowest index on ties; -1 when no mask is valid)
    background m_b = elementwise max of the other valid masks
    ambiguity  = 1 - (IoU(r, m_f) - IoU(r, m_b))   with the soft IoU ``variant`` (see soft_iou)

With no valid mask both IoUs are 0 and the ambiguity is 1. Masks should be in [0, 1].

Autograd to ``response`` (through the IoUs; the foreground choice is piecewise constant). The
compiled kernel computes d ambiguity / d response in the same pass as the forward when the
response needs a gradient, so the backward is a broadcast multiply. First-order only: the
gradient field is treated as a constant, so double backward is not supported.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _pcnet_args
from dapo_fast.ops._reference import pcnet as _reference

__all__ = ["region_ambiguity"]


def region_ambiguity(response: Tensor, masks: Tensor, mask_valid: Optional[Tensor] = None, variant: str = "iou",
                     eps: float = 1e-5, *, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Args:
        response: Tensor[B, S, H, W] float.
        masks: Tensor[B, P, H, W] bool, uint8 or float in [0, 1].
        mask_valid: Tensor[B, P] bool (None: all valid).
        variant: "iou" | "half_dice"; eps added to the denominators.
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        (ambiguity Tensor[B, S] of response's dtype, foreground Tensor[B, S] int64).
    """
    masks = _pcnet_args.response_and_masks(response, masks)
    mask_valid = _pcnet_args.mask_valid_tensor(mask_valid, masks)
    variant = _pcnet_args.variant_name(variant)
    eps = float(eps)
    chosen = _backend.resolve(backend, response.device)
    if chosen == "reference":
        return _reference.region_ambiguity(response, masks, mask_valid, variant, eps)
    with_grad = torch.is_grad_enabled() and response.requires_grad
    if chosen == "triton":
        from dapo_fast.ops._triton import region_ambiguity as _triton

        ambiguity, foreground, _ = _triton.region_ambiguity(response, masks, mask_valid, variant, eps, with_grad)
        return ambiguity, foreground
    ambiguity, foreground, _ = torch.ops.dapo_fast.region_ambiguity(response, masks, mask_valid, variant, eps,
                                                                    with_grad)
    return ambiguity, foreground


def _fake(response, masks, mask_valid, variant, eps, with_grad):
    b, s = response.shape[0], response.shape[1]
    field = torch.empty_like(response, memory_format=torch.contiguous_format) if with_grad else response.new_empty((0,))
    return response.new_empty((b, s)), response.new_empty((b, s), dtype=torch.int64), field


def _setup_context(ctx, inputs, output):
    with_grad = inputs[5]
    ctx.with_grad = with_grad
    ctx.save_for_backward(output[2])


def _backward(ctx, grad_ambiguity, _grad_foreground, _grad_field):
    (field,) = ctx.saved_tensors
    if not ctx.with_grad:
        raise RuntimeError("region_ambiguity was called with with_grad=False; call it with with_grad=True "
                           "(dapo_fast.ops.region_ambiguity does) to differentiate it")
    return grad_ambiguity[:, :, None, None] * field, None, None, None, None, None


if _extension.HAS_C:
    torch.library.register_fake("dapo_fast::region_ambiguity", _fake)
    torch.library.register_autograd("dapo_fast::region_ambiguity", _backward, setup_context=_setup_context)
