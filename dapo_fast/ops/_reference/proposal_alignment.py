"""PCNet's alignment score in plain PyTorch: the specification, differentiable in ``response``.

Shapes: response [B, S, H, W] (one response map per stage/phrase), masks [B, P, H, W] (bool, uint8
or float), mask_valid [B, P] bool. An invalid mask behaves as an all-zero mask. Computed in
float32 for half/bfloat16 responses. Tie rule: the max picks the first pixel in row-major order
(its gradient goes there).
"""
import torch
from torch import Tensor

from dapo_fast.ops._reference import compute_dtype


def valid_masks(masks: Tensor, mask_valid: Tensor, dtype: torch.dtype) -> Tensor:
    """masks in ``dtype`` with the invalid ones zeroed."""
    return masks.to(dtype) * mask_valid.to(dtype)[:, :, None, None]


def proposal_alignment(response: Tensor, masks: Tensor, mask_valid: Tensor) -> Tensor:
    """[B, S, P]: max over pixels of response * mask (0 for invalid masks)."""
    dtype = compute_dtype(response.dtype)
    r = response.to(dtype).flatten(2)                       # [B, S, HW]
    m = valid_masks(masks, mask_valid, dtype).flatten(2)    # [B, P, HW]
    prod = r[:, :, None, :] * m[:, None, :, :]              # [B, S, P, HW]
    if prod.shape[-1] == 0:
        return prod.sum(-1).to(response.dtype)
    values, _ = prod.max(dim=-1)                            # first maximum's index gets the gradient
    zero = torch.zeros((), dtype=dtype, device=response.device)
    values = torch.where(mask_valid[:, None, :], values, zero)
    return values.to(response.dtype)
