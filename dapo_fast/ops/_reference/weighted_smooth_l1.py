"""Weighted smooth-L1 in plain PyTorch: the specification."""
import torch.nn.functional as F
from torch import Tensor


def weighted_smooth_l1(input: Tensor, target: Tensor, weight: Tensor, beta: float = 1.0,
                       reduction: str = "sum") -> Tensor:
    """weight * smooth_l1(input - target) (torch's ``F.smooth_l1_loss`` with ``beta``, its
    gradients included: beta == 0 is L1), weight broadcast to input's shape; reduction "none" |
    "sum" | "mean" (over all elements)."""
    loss = weight * F.smooth_l1_loss(input, target, reduction="none", beta=beta)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()
