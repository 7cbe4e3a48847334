"""Momentum (EMA) teacher update of MPL / MoCo, in plain PyTorch: the specification.

    teacher <- momentum * teacher + (1 - momentum) * student     (in place, every pair)
"""
from typing import Sequence

import torch


@torch.no_grad()
def momentum_update_(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], momentum: float) -> None:
    for t, s in zip(teacher, student):
        t.mul_(momentum).add_(s, alpha=1.0 - momentum)


@torch.no_grad()
def momentum_update_lerp_loop_(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor],
                               momentum: float) -> None:
    """The usual Python loop of ``lerp_``, one dispatch per tensor (the benchmark baseline)."""
    for t, s in zip(teacher, student):
        t.lerp_(s, 1.0 - momentum)
