"""Momentum (EMA) teacher update over a whole model in one call (MPL, MoCo, ALBEF).

    teacher[i] <- momentum * teacher[i] + (1 - momentum) * student[i]     for every i, in place

The CPU kernel cuts every pair into fixed chunks and runs all chunks of all tensors in one
parallel loop (the CUDA kernel: one launch over a chunk table), instead of one ``lerp_`` dispatch
per parameter. Non-contiguous teacher tensors fall back to ATen in place.
"""
from typing import Iterable, List, Sequence, Union

import torch
from torch import Tensor, nn

from dapo_fast import _extension
from dapo_fast.ops import _backend
from dapo_fast.ops._meta import momentum_update as _meta
from dapo_fast.ops._reference import momentum_update as _reference

__all__ = ["momentum_update_"]

TensorsOrModule = Union[nn.Module, Sequence[Tensor], Iterable[Tensor]]


def _tensors(x: TensorsOrModule, name: str) -> List[Tensor]:
    if isinstance(x, nn.Module):
        return list(x.parameters())
    if isinstance(x, Tensor):
        raise TypeError(f"{name} must be a module or a sequence of tensors, got a single Tensor")
    out = list(x)
    if not all(isinstance(t, Tensor) for t in out):
        i = next(i for i, t in enumerate(out) if not isinstance(t, Tensor))
        raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(out[i]).__name__}")
    return out


def momentum_update_(teacher: TensorsOrModule, student: TensorsOrModule, momentum: float, *,
                     backend: str = "auto") -> None:
    """EMA of ``student`` into ``teacher`` (in place, no autograd).

    Args:
        teacher: nn.Module or sequence of Tensors (updated in place).
        student: nn.Module or sequence of Tensors, same shapes and dtypes, same order.
        momentum: gamma in [0, 1] (MPL: 0.99; 1 keeps the teacher, 0 copies the student).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".
    """
    ts, ss = _tensors(teacher, "teacher"), _tensors(student, "student")
    if len(ts) != len(ss):
        raise ValueError(f"teacher and student must hold the same number of tensors, got {len(ts)} and {len(ss)}")
    if not isinstance(momentum, (int, float)):
        raise TypeError(f"momentum must be a float, got {type(momentum).__name__}")
    if not 0.0 <= float(momentum) <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not ts:
        return
    momentum = float(momentum)
    chosen = _backend.resolve(backend, ts[0].device)
    with torch.no_grad():
        if chosen == "reference":
            _check_pairs(ts, ss)
            _reference.momentum_update_(ts, ss, momentum)
        elif chosen == "triton":
            _check_pairs(ts, ss)
            from dapo_fast.ops._triton import momentum_update as _triton

            _triton.momentum_update_(ts, ss, momentum)
        elif torch.compiler.is_compiling():
            torch.ops.dapo_fast.momentum_update_(ts, ss, momentum)
        else:
            # The C++ op checks every pair itself; the per-tensor Python checks (a few hundred ns per
            # tensor, as much as a lerp_ call) only run to turn its error into a typed one.
            try:
                torch.ops.dapo_fast.momentum_update_(ts, ss, momentum)
            except RuntimeError:
                _check_pairs(ts, ss)
                raise


def _check_pairs(ts, ss):
    for i, (t, s) in enumerate(zip(ts, ss)):
        if not t.is_floating_point():
            raise TypeError(f"teacher[{i}] must be a floating-point tensor, got {t.dtype}")
        if t.dtype != s.dtype:
            raise TypeError(f"teacher[{i}] and student[{i}] must have the same dtype, got {t.dtype} and {s.dtype}")
        if t.shape != s.shape:
            raise ValueError(f"teacher[{i}] and student[{i}] must have the same shape, got {tuple(t.shape)} and "
                             f"{tuple(s.shape)}")
        if t.device != s.device or t.device != ts[0].device:
            raise ValueError(f"teacher[{i}] and student[{i}] must be on the same device as teacher[0], got "
                             f"{t.device} and {s.device}")


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.momentum_update_.default)
