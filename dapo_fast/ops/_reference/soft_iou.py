"""Soft IoU of response maps with mask proposals (PCNet) in plain PyTorch: the specification,
differentiable in ``response``. Computed in float32 for half/bfloat16 responses."""
from torch import Tensor

from dapo_fast.ops._reference import compute_dtype

VARIANTS = ("iou", "half_dice")


def soft_iou_of_flat(r: Tensor, m: Tensor, variant: str, eps: float) -> Tensor:
    """r [..., HW], m [..., HW] (broadcasting) -> soft IoU over the last dim."""
    inter = (r * m).sum(-1)
    total = r.sum(-1) + m.sum(-1)
    denom = total - inter if variant == "iou" else total
    return inter / (denom + eps)


def soft_iou(response: Tensor, masks: Tensor, variant: str = "iou", eps: float = 1e-5) -> Tensor:
    """[B, S, P]: iou = sum(r*m) / (sum r + sum m - sum(r*m) + eps); half_dice drops the - sum(r*m)."""
    dtype = compute_dtype(response.dtype)
    r = response.to(dtype).flatten(2)[:, :, None, :]
    m = masks.to(dtype).flatten(2)[:, None, :, :]
    return soft_iou_of_flat(r, m, variant, eps).to(response.dtype)
