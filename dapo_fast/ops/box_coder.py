"""Box deltas with detectron2's Box2BoxTransform semantics (ReIR's regression).

    encode: dx = wx * (tx - sx) / sw, dy = wy * (ty - sy) / sh, dw = ww * log(tw / sw), dh = wh * log(th / sh)
    decode: the inverse, with dw, dh clamped at ``scale_clamp`` (default log(1000 / 16)) before exp.

(s = proposal, t = target; x, y centres, w, h sizes with w = x2 - x1.) Boxes and deltas are
Tensor[..., 4]; both inputs have the same shape (leading dims are flattened for the kernel).
Backends ``cpu`` (C++), ``cuda``, ``reference``; differentiable in both inputs.
Degenerate proposals (zero width/height) give inf/NaN deltas, as in detectron2 (which asserts).
"""
from typing import Sequence

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import box_coder as _meta
from dapo_fast.ops._reference import box_coder as _reference
from dapo_fast.ops._reference.box_coder import DEFAULT_SCALE_CLAMP, DEFAULT_WEIGHTS

__all__ = ["box_encode", "box_decode", "DEFAULT_WEIGHTS", "DEFAULT_SCALE_CLAMP"]


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
    w = _checks.box_weights(weights)
    chosen = _backend.resolve(backend, proposals.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_encode(proposals, targets, w)
    shape = proposals.shape
    return torch.ops.dapo_fast.box_encode(proposals.reshape(-1, 4), targets.reshape(-1, 4), w).reshape(shape)


def box_decode(deltas: Tensor, boxes: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS,
               scale_clamp: float = DEFAULT_SCALE_CLAMP, *, backend: str = "auto") -> Tensor:
    """Boxes [..., 4] obtained by applying ``deltas`` [..., 4] to ``boxes`` [..., 4]."""
    _pair(deltas, "deltas", boxes, "boxes")
    w = _checks.box_weights(weights)
    scale_clamp = float(scale_clamp)
    chosen = _backend.resolve(backend, deltas.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_decode(deltas, boxes, w, scale_clamp)
    shape = deltas.shape
    return torch.ops.dapo_fast.box_decode(deltas.reshape(-1, 4), boxes.reshape(-1, 4), w, scale_clamp).reshape(shape)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.box_encode.default, torch.ops.dapo_fast.box_encode_backward.default)
    _meta.register(torch.ops.dapo_fast.box_decode.default, torch.ops.dapo_fast.box_decode_backward.default)
