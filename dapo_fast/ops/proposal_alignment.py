"""PCNet's alignment score: s[b, s, p] = max over pixels of response[b, s] * masks[b, p].

Backends: ``cpu`` (C++), ``cuda``, ``reference``. Autograd to ``response``: the gradient of each
score goes to the pixel where the maximum is attained (times the mask value there).
Tie rule: the first such pixel in row-major order. Invalid masks (``mask_valid`` False) score 0
and pass no gradient, like an all-zero mask.
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import proposal_alignment as _meta
from dapo_fast.ops._reference import proposal_alignment as _reference

__all__ = ["proposal_alignment"]


def proposal_alignment(response: Tensor, masks: Tensor, mask_valid: Optional[Tensor] = None, *,
                       backend: str = "auto") -> Tensor:
    """Alignment of every response map with every mask proposal of its image.

    Args:
        response: Tensor[B, S, H, W] float (S maps per image: stages or phrases).
        masks: Tensor[B, P, H, W] bool, uint8 or float in [0, 1].
        mask_valid: Tensor[B, P] bool (None: all valid).

    Returns:
        Tensor[B, S, P] of response's dtype (fp32 accumulation for half/bfloat16).
    """
    masks = _checks.response_and_masks(response, masks)
    mask_valid = _checks.mask_valid_tensor(mask_valid, masks)
    chosen = _backend.resolve(backend, response.device, has_triton=False)
    if chosen == "reference":
        return _reference.proposal_alignment(response, masks, mask_valid)
    return torch.ops.dapo_fast.proposal_alignment(response, masks, mask_valid)[0]


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.proposal_alignment.default,
                   torch.ops.dapo_fast.proposal_alignment_backward.default)
