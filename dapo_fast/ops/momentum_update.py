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
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import momentum_update as _meta
from dapo_fast.ops._reference import momentum_update as _reference

__all__ = ["momentum_update_"]

TensorsOrModule = Union[nn.Module, Sequence[Tensor], Iterable[Tensor]]


def _tensors(x: TensorsOrModule, name: str) -> List[Tensor]:
    """The tensors of ``x`` as a list; the element types are checked by :func:`_check_tensors` (or
    by the C++ op, whose refusal is then turned into the typed error)."""
    if isinstance(x, nn.Module):
        return list(x.parameters())
    if isinstance(x, Tensor):
        raise TypeError(f"{name} must be a module or a sequence of tensors, got a single Tensor")
    return x if type(x) is list else list(x)


def _check_tensors(x: List[Tensor], name: str) -> None:
    for i, t in enumerate(x):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(t).__name__}")


def momentum_update_(teacher: TensorsOrModule, student: TensorsOrModule, momentum: float, *,
                     backend: str = "auto") -> None:
    """EMA of ``student`` into ``teacher`` (in place, no autograd).

    Args:
        teacher: nn.Module or sequence of Tensors (updated in place). A teacher tensor must not be
            expanded nor share memory with any other tensor of the call (ValueError).
        student: nn.Module or sequence of Tensors, same shapes and dtypes, same order.
        momentum: gamma in [0, 1] (MPL: 0.99; 1 keeps the teacher, 0 copies the student).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".
    """
    ts, ss = _tensors(teacher, "teacher"), _tensors(student, "student")
    if len(ts) != len(ss):
        raise ValueError(f"teacher and student must hold the same number of tensors, got {len(ts)} and {len(ss)}")
    momentum = _checks.real(momentum, "momentum")
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if not ts:
        return
    if _eager_kernel(backend, ts):
        # The C++ op checks every tensor, pair and their memory itself; the Python checks (a few
        # hundred ns per tensor, as much as a lerp_ call) only run to turn its refusal into a typed
        # error.
        try:
            with torch.no_grad():
                torch.ops.dapo_fast.momentum_update_.default(ts, ss, momentum)
        except RuntimeError:
            _check_all(ts, ss)
            raise
        return
    _check_tensors(ts, "teacher")
    _check_tensors(ss, "student")
    chosen = _backend.resolve(backend, ts[0].device)
    with torch.no_grad():
        if chosen == "reference":
            _check_pairs(ts, ss)
            _check_memory(ts, ss)
            _reference.momentum_update_(ts, ss, momentum)
        elif chosen == "triton":
            _check_pairs(ts, ss)
            _check_memory(ts, ss)
            from dapo_fast.ops._triton import momentum_update as _triton

            _triton.momentum_update_(ts, ss, momentum)
        else:
            torch.ops.dapo_fast.momentum_update_(ts, ss, momentum)


def _eager_kernel(backend: str, ts: List[Tensor]) -> bool:
    """Eager call of the compiled kernel on a CPU or CUDA tensor (the common case): no Python
    per-tensor checks before the op."""
    if torch.compiler.is_compiling() or not isinstance(ts[0], Tensor):
        return False
    device = ts[0].device
    return device.type in ("cpu", "cuda") and _backend.resolve(backend, device) == device.type


def _check_all(ts, ss):
    _check_tensors(ts, "teacher")
    _check_tensors(ss, "student")
    _check_pairs(ts, ss)
    _check_memory(ts, ss)


def _check_memory(ts, ss):
    """No teacher is expanded or shares memory with another tensor of the call: the kernels read a
    student while they write its teacher (the C++ kernel through __restrict pointers), and the
    tensors are updated in no defined order."""
    for i, t in enumerate(ts):
        if _checks.expanded(t):
            raise ValueError(f"teacher[{i}] must not be an expanded tensor: several of its elements are one memory "
                             f"location")
    spans = sorted((_checks.memory_span(t) + (f"{role}[{i}]",)
                    for role, tensors in (("teacher", ts), ("student", ss)) for i, t in enumerate(tensors)
                    if t.numel() and t.device.type != "meta"), key=lambda s: (s[0], s[1]))
    latest = {"any": None, "teacher": None}  # the interval reaching furthest so far, of any tensor / of a teacher
    for storage, first, end, name in spans:
        earlier = latest["any"] if name.startswith("teacher") else latest["teacher"]
        if earlier is not None and earlier[0] == storage and first < earlier[2]:
            raise ValueError(f"{name} shares memory with {earlier[3]}; teacher tensors must not overlap any other "
                             f"tensor of the update")
        for key in ("any", "teacher") if name.startswith("teacher") else ("any",):
            if latest[key] is None or latest[key][0] != storage or end > latest[key][2]:
                latest[key] = (storage, first, end, name)


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
