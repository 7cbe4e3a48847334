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
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import region_ambiguity as _meta
from dapo_fast.ops._reference import region_ambiguity as _reference

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
    masks = _checks.response_and_masks(response, masks)
    mask_valid = _checks.mask_valid_tensor(mask_valid, masks)
    variant = _checks.soft_iou_variant(variant)
    eps = float(eps)
    chosen = _backend.resolve(backend, response.device)
    if chosen == "reference":
        return _reference.region_ambiguity(response, masks, mask_valid, variant, eps)
    with_grad = torch.is_grad_enabled() and response.requires_grad
    if chosen == "triton":
        from dapo_fast.ops._triton import region_ambiguity as _triton

        op = _triton.region_ambiguity_triton
    else:
        op = torch.ops.dapo_fast.region_ambiguity
    ambiguity, foreground, _ = op(response, masks, mask_valid, variant, eps, with_grad)
    return ambiguity, foreground


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.region_ambiguity.default)
