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
from dapo_fast.ops import _backend, _pcnet_args
from dapo_fast.ops._reference import pcnet as _reference

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
    masks = _pcnet_args.response_and_masks(response, masks)
    mask_valid = _pcnet_args.mask_valid_tensor(mask_valid, masks)
    chosen = _backend.resolve(backend, response.device, has_triton=False)
    if chosen == "reference":
        return _reference.proposal_alignment(response, masks, mask_valid)
    return torch.ops.dapo_fast.proposal_alignment(response, masks, mask_valid)[0]


def _fake(response, masks, mask_valid):
    shape = (response.shape[0], response.shape[1], masks.shape[1])
    return response.new_empty(shape), response.new_empty(shape, dtype=torch.int64)


def _fake_backward(grad, argmax, masks, height, width):
    return grad.new_empty((grad.shape[0], grad.shape[1], height, width))


def _setup_context(ctx, inputs, output):
    response, masks, _ = inputs
    ctx.save_for_backward(output[1], masks)
    ctx.size = (response.shape[2], response.shape[3])


def _backward(ctx, grad_scores, _grad_argmax):
    argmax, masks = ctx.saved_tensors
    grad = torch.ops.dapo_fast.proposal_alignment_backward(grad_scores, argmax, masks, *ctx.size)
    return grad, None, None


if _extension.HAS_C:
    torch.library.register_fake("dapo_fast::proposal_alignment", _fake)
    torch.library.register_fake("dapo_fast::proposal_alignment_backward", _fake_backward)
    torch.library.register_autograd("dapo_fast::proposal_alignment", _backward, setup_context=_setup_context)
