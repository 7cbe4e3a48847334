"""Weighted smooth-L1 in plain PyTorch: the specification."""
import torch
from torch import Tensor


def weighted_smooth_l1(input: Tensor, target: Tensor, weight: Tensor, beta: float = 1.0,
                       reduction: str = "sum") -> Tensor:
    """weight * smooth_l1(input - target) (torch's smooth_l1 with ``beta``; beta == 0 is L1),
    weight broadcast to input's shape; reduction "none" | "sum" | "mean" (over all elements)."""
    diff = input - target
    if beta == 0:
        loss = diff.abs()
    else:
        n = diff.abs()
        loss = torch.where(n < beta, 0.5 * n * n / beta, n - 0.5 * beta)
    loss = weight * loss
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.mean()
