"""PCNet's region ambiguity in plain PyTorch: the specification, differentiable in ``response``.

Shapes as in proposal_alignment. An invalid mask behaves as an all-zero mask, except that it is
never chosen as the foreground. Computed in float32 for half/bfloat16 responses. Tie rule: the
foreground is the lowest proposal index among equal alignment scores.
"""
import torch
from torch import Tensor

from dapo_fast.ops._reference import compute_dtype
from dapo_fast.ops._reference.proposal_alignment import proposal_alignment, valid_masks
from dapo_fast.ops._reference.soft_iou import soft_iou_of_flat


def region_ambiguity(response: Tensor, masks: Tensor, mask_valid: Tensor, variant: str = "iou",
                     eps: float = 1e-5):
    """(ambiguity [B, S], foreground [B, S] int64).

    foreground = argmax over valid proposals of the alignment score (-1 when none is valid),
    background = elementwise max (union) of the other valid masks,
    ambiguity = 1 - (IoU(r, m_fg) - IoU(r, m_bg)) with the soft IoU ``variant``.
    """
    dtype = compute_dtype(response.dtype)
    r = response.to(dtype)
    b, s = r.shape[:2]
    p = masks.shape[1]
    m = valid_masks(masks, mask_valid, dtype)               # [B, P, H, W], invalid = 0
    with torch.no_grad():
        scores = proposal_alignment(r, masks, mask_valid).to(dtype)
        scores = scores.masked_fill(~mask_valid[:, None, :], float("-inf"))
        if p > 0:
            fg = scores.argmax(dim=-1)                      # first maximum: the lowest proposal index
        else:
            fg = torch.zeros((b, s), dtype=torch.int64, device=r.device)
        any_valid = mask_valid.any(dim=-1)[:, None].expand(b, s)
        fg = torch.where(any_valid, fg, torch.full_like(fg, -1))
    index = torch.arange(p, device=r.device)
    is_fg = (index[None, None, :] == fg[:, :, None]).to(dtype)            # [B, S, P]
    m_fg = (is_fg[:, :, :, None, None] * m[:, None]).sum(2)              # [B, S, H, W]
    others = (1 - is_fg)[:, :, :, None, None] * m[:, None]               # [B, S, P, H, W]
    m_bg = others.amax(2) if p > 0 else torch.zeros_like(r)
    iou_fg = soft_iou_of_flat(r.flatten(2), m_fg.flatten(2), variant, eps)
    iou_bg = soft_iou_of_flat(r.flatten(2), m_bg.flatten(2), variant, eps)
    ambiguity = 1 - (iou_fg - iou_bg)
    return ambiguity.to(response.dtype), fg
