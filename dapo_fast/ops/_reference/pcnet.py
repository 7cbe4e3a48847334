"""PCNet's proposal scoring in plain PyTorch: the specification, differentiable in ``response``.

Shapes: response [B, S, H, W] (one response map per stage/phrase), masks [B, P, H, W] (bool, uint8
or float), mask_valid [B, P] bool. An invalid mask behaves as an all-zero mask, except that it is
never chosen as the foreground. Computed in float32 for half/bfloat16 responses.

Tie rules: the alignment max picks the first pixel in row-major order (its gradient goes there);
the foreground is the lowest proposal index among equal alignment scores.
"""
import torch
from torch import Tensor

VARIANTS = ("iou", "half_dice")


def _compute_dtype(response: Tensor) -> torch.dtype:
    return torch.float32 if response.dtype in (torch.float16, torch.bfloat16) else response.dtype


def _masks(masks: Tensor, mask_valid: Tensor, dtype: torch.dtype) -> Tensor:
    return masks.to(dtype) * mask_valid.to(dtype)[:, :, None, None]


def proposal_alignment(response: Tensor, masks: Tensor, mask_valid: Tensor) -> Tensor:
    """[B, S, P]: max over pixels of response * mask (0 for invalid masks)."""
    dtype = _compute_dtype(response)
    r = response.to(dtype).flatten(2)                       # [B, S, HW]
    m = _masks(masks, mask_valid, dtype).flatten(2)         # [B, P, HW]
    prod = r[:, :, None, :] * m[:, None, :, :]              # [B, S, P, HW]
    if prod.shape[-1] == 0:
        return prod.sum(-1).to(response.dtype)
    values, _ = prod.max(dim=-1)                            # first maximum's index gets the gradient
    zero = torch.zeros((), dtype=dtype, device=response.device)
    values = torch.where(mask_valid[:, None, :], values, zero)
    return values.to(response.dtype)


def _soft_iou_sums(r: Tensor, m: Tensor, variant: str, eps: float) -> Tensor:
    """r [..., HW], m [..., HW] (broadcasting) -> soft IoU over the last dim."""
    inter = (r * m).sum(-1)
    total = r.sum(-1) + m.sum(-1)
    denom = total - inter if variant == "iou" else total
    return inter / (denom + eps)


def soft_iou(response: Tensor, masks: Tensor, variant: str = "iou", eps: float = 1e-5) -> Tensor:
    """[B, S, P]: iou = sum(r*m) / (sum r + sum m - sum(r*m) + eps); half_dice drops the - sum(r*m)."""
    dtype = _compute_dtype(response)
    r = response.to(dtype).flatten(2)[:, :, None, :]
    m = masks.to(dtype).flatten(2)[:, None, :, :]
    return _soft_iou_sums(r, m, variant, eps).to(response.dtype)


def region_ambiguity(response: Tensor, masks: Tensor, mask_valid: Tensor, variant: str = "iou",
                     eps: float = 1e-5):
    """(ambiguity [B, S], foreground [B, S] int64).

    foreground = argmax over valid proposals of the alignment score (-1 when none is valid),
    background = elementwise max (union) of the other valid masks,
    ambiguity = 1 - (IoU(r, m_fg) - IoU(r, m_bg)) with the soft IoU ``variant``.
    """
    dtype = _compute_dtype(response)
    r = response.to(dtype)
    b, s = r.shape[:2]
    p = masks.shape[1]
    m = _masks(masks, mask_valid, dtype)                    # [B, P, H, W], invalid = 0
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
    iou_fg = _soft_iou_sums(r.flatten(2), m_fg.flatten(2), variant, eps)
    iou_bg = _soft_iou_sums(r.flatten(2), m_bg.flatten(2), variant, eps)
    ambiguity = 1 - (iou_fg - iou_bg)
    return ambiguity.to(response.dtype), fg
