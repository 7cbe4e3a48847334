"""Box deltas with detectron2's Box2BoxTransform semantics (ReIR's regression).

    encode: dx = wx * (tx - sx) / sw, dy = wy * (ty - sy) / sh, dw = ww * log(tw / sw), dh = wh * log(th / sh)
    decode: the inverse, with dw, dh clamped at ``scale_clamp`` (default log(1000 / 16)) before exp.

(s = proposal, t = target; x, y centres, w, h sizes with w = x2 - x1.) Boxes and deltas are
Tensor[..., 4]; both inputs have the same shape (leading dims are flattened for the kernel).
Backends ``cpu`` (C++), ``cuda``, ``reference``; differentiable in both inputs.
Degenerate proposals (zero width/height) give inf/NaN deltas, as in detectron2 (which asserts).
"""
import math
from typing import Sequence

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._reference import box_ops as _reference

__all__ = ["box_encode", "box_decode", "DEFAULT_WEIGHTS", "DEFAULT_SCALE_CLAMP"]

DEFAULT_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _weights(weights: Sequence[float]):
    w = [float(v) for v in weights]
    if len(w) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
    if any(not v > 0 for v in w):
        raise ValueError(f"weights must be positive, got {weights!r}")
    return w


def _pair(a: Tensor, a_name: str, b: Tensor, b_name: str):
    _checks.tensor(a, a_name)
    _checks.tensor(b, b_name, device=a.device)
    if a.dim() == 0 or a.shape[-1] != 4:
        raise ValueError(f"{a_name} must have shape [..., 4], got {tuple(a.shape)}")
    if b.shape != a.shape:
        raise ValueError(f"{b_name} must have {a_name}'s shape {tuple(a.shape)}, got {tuple(b.shape)}")
    _checks.same_dtype(a, a_name, b, b_name)


def box_encode(proposals: Tensor, targets: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS, *,
               backend: str = "auto") -> Tensor:
    """Deltas [..., 4] that map ``proposals`` [..., 4] onto ``targets`` [..., 4]."""
    _pair(proposals, "proposals", targets, "targets")
    w = _weights(weights)
    chosen = _backend.resolve(backend, proposals.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_encode(proposals, targets, w)
    shape = proposals.shape
    return torch.ops.dapo_fast.box_encode(proposals.reshape(-1, 4), targets.reshape(-1, 4), w).reshape(shape)


def box_decode(deltas: Tensor, boxes: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS,
               scale_clamp: float = DEFAULT_SCALE_CLAMP, *, backend: str = "auto") -> Tensor:
    """Boxes [..., 4] obtained by applying ``deltas`` [..., 4] to ``boxes`` [..., 4]."""
    _pair(deltas, "deltas", boxes, "boxes")
    w = _weights(weights)
    scale_clamp = float(scale_clamp)
    chosen = _backend.resolve(backend, deltas.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_decode(deltas, boxes, w, scale_clamp)
    shape = deltas.shape
    return torch.ops.dapo_fast.box_decode(deltas.reshape(-1, 4), boxes.reshape(-1, 4), w, scale_clamp).reshape(shape)


def _fake_rows(a, b, *args):
    return torch.empty_like(a, memory_format=torch.contiguous_format)


def _fake_rows_backward(grad, a, b, *args):
    return torch.empty_like(a, memory_format=torch.contiguous_format), torch.empty_like(b, memory_format=torch.contiguous_format)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.args = inputs[2:]


def _encode_backward(ctx, grad):
    proposals, targets = ctx.saved_tensors
    gs, gt = torch.ops.dapo_fast.box_encode_backward(grad, proposals, targets, *ctx.args)
    return gs, gt, None


def _decode_backward(ctx, grad):
    deltas, boxes = ctx.saved_tensors
    gd, gb = torch.ops.dapo_fast.box_decode_backward(grad, deltas, boxes, *ctx.args)
    return gd, gb, None, None


if _extension.HAS_C:
    for _name in ("box_encode", "box_decode"):
        torch.library.register_fake(f"dapo_fast::{_name}", _fake_rows)
        torch.library.register_fake(f"dapo_fast::{_name}_backward", _fake_rows_backward)
    torch.library.register_autograd("dapo_fast::box_encode", _encode_backward, setup_context=_setup)
    torch.library.register_autograd("dapo_fast::box_decode", _decode_backward, setup_context=_setup)
