"""Momentum (EMA) teacher update of MPL / MoCo, in plain PyTorch: the specification.

    teacher <- momentum * teacher + (1 - momentum) * student     (in place, every pair)
"""
from typing import Sequence

import torch


@torch.no_grad()
def momentum_update_(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor], momentum: float) -> None:
    """Pairs in order; each new teacher is computed from the old values before it is written, so
    a student that shares memory with its teacher (or the teacher itself) reads the values as they
    were before this pair's update."""
    for t, s in zip(teacher, student):
        t.copy_(t * momentum + s * (1.0 - momentum))


@torch.no_grad()
def momentum_update_lerp_loop_(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor],
                               momentum: float) -> None:
    """The usual Python loop of ``lerp_``, one dispatch per tensor (the benchmark baseline)."""
    for t, s in zip(teacher, student):
        t.lerp_(s, 1.0 - momentum)
