"""Weighted smooth-L1: weight * smooth_l1(input - target, beta), torch's smooth_l1 definition
(0.5 * d^2 / beta for |d| < beta, |d| - 0.5 * beta otherwise; beta == 0 is plain L1).

``weight`` has input's shape, or input's shape without the last dim (one weight per box, as
self_taught_targets returns). Reductions: "none", "sum" (default; a deterministic float64 sum
in the kernel), "mean" (over all elements). Autograd to ``input`` and ``target``.
"""
import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import weighted_smooth_l1 as _meta
from dapo_fast.ops._reference import weighted_smooth_l1 as _reference

__all__ = ["weighted_smooth_l1"]

_REDUCTIONS = {"none": 0, "sum": 1, "mean": 2}


def weighted_smooth_l1(input: Tensor, target: Tensor, weight: Tensor, beta: float = 1.0, reduction: str = "sum", *,
                       backend: str = "auto") -> Tensor:
    _checks.tensor(input, "input")
    _checks.tensor(target, "target", device=input.device)
    _checks.tensor(weight, "weight", device=input.device)
    if target.shape != input.shape:
        raise ValueError(f"target must have input's shape {tuple(input.shape)}, got {tuple(target.shape)}")
    if weight.shape == input.shape[:-1] and input.dim() > 0:
        weight = weight[..., None]
    if weight.dim() == input.dim() and weight.shape[-1] == 1 and input.dim() > 0:
        weight = weight.expand(input.shape)
    if weight.shape != input.shape:
        raise ValueError(f"weight must have input's shape {tuple(input.shape)} or {tuple(input.shape[:-1])}, "
                         f"got {tuple(weight.shape)}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {tuple(_REDUCTIONS)}, got {reduction!r}")
    beta = float(beta)
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    target = target.to(input.dtype)
    weight = weight.to(input.dtype)
    chosen = _backend.resolve(backend, input.device, has_triton=False)
    if chosen == "reference":
        return _reference.weighted_smooth_l1(input, target, weight, beta, reduction)
    return torch.ops.dapo_fast.weighted_smooth_l1(input, target, weight, beta, _REDUCTIONS[reduction])


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.weighted_smooth_l1.default,
                   torch.ops.dapo_fast.weighted_smooth_l1_backward.default)
