"""Argument handling shared by the PCNet ops (proposal_alignment, soft_iou, region_ambiguity)."""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast.ops import _checks

VARIANTS = ("iou", "half_dice")


def response_and_masks(response: Tensor, masks: Tensor):
    """Checks shapes; returns masks as bool/uint8 (kept) or in response's dtype (float masks)."""
    _checks.tensor(response, "response", dim=4)
    _checks.tensor(masks, "masks", dim=4, dtypes=None, device=response.device)
    if masks.shape[0] != response.shape[0] or masks.shape[2:] != response.shape[2:]:
        raise ValueError(f"masks must have shape [B, P, H, W] matching response [B, S, H, W] = "
                         f"{tuple(response.shape)}, got {tuple(masks.shape)}")
    if masks.dtype in (torch.bool, torch.uint8):
        return masks
    if not masks.is_floating_point():
        raise TypeError(f"masks must be bool, uint8 or floating point, got {masks.dtype}")
    return masks.to(response.dtype)


def mask_valid_tensor(mask_valid: Optional[Tensor], masks: Tensor) -> Tensor:
    if mask_valid is None:
        return torch.ones(masks.shape[:2], dtype=torch.bool, device=masks.device)
    _checks.tensor(mask_valid, "mask_valid", dtypes=None, device=masks.device)
    if tuple(mask_valid.shape) != tuple(masks.shape[:2]):
        raise ValueError(f"mask_valid must have shape [B, P] = {tuple(masks.shape[:2])}, got {tuple(mask_valid.shape)}")
    return mask_valid.to(torch.bool)


def variant_name(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant
