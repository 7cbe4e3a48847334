"""Box deltas with detectron2's Box2BoxTransform semantics (ReIR's regression).

    encode: dx = wx * (tx - sx) / sw, dy = wy * (ty - sy) / sh, dw = ww * log(tw / sw), dh = wh * log(th / sh)
    decode: the inverse, with dw, dh clamped at ``scale_clamp`` (default log(1000 / 16)) before exp.

(s = proposal, t = target; x, y centres, w, h sizes with w = x2 - x1.) Backends ``cpu`` (C++),
``cuda``, ``reference``; differentiable in both inputs. Degenerate proposals (zero width/height)
give inf/NaN deltas, as in detectron2 (which asserts).

As detectron2 (``get_deltas`` / ``apply_deltas``):

* encode: proposals and targets of the same shape [..., 4]; mixed dtypes promote as arithmetic
  does (float32 with float64 gives float64).
* decode: deltas [..., 4 * k] against boxes [..., 4] (k per-class transforms of each box, e.g.
  [N, num_classes * 4] from a box head); the boxes are cast to the deltas' dtype, and half/bfloat16
  deltas decode in float32 (detectron2's "fp32 for decoding precision"). Unlike detectron2, float64
  deltas stay float64 (detectron2 rounds them to float32).
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


def _boxes(t: Tensor, name: str, device=None) -> None:
    _checks.tensor(t, name, device=device)
    if t.dim() == 0 or t.shape[-1] % 4 != 0 or t.shape[-1] == 0:
        raise ValueError(f"{name} must have shape [..., 4], got {tuple(t.shape)}")


def box_encode(proposals: Tensor, targets: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS, *,
               backend: str = "auto") -> Tensor:
    """Deltas [..., 4] that map ``proposals`` [..., 4] onto ``targets`` [..., 4] (same shape)."""
    _boxes(proposals, "proposals")
    _boxes(targets, "targets", proposals.device)
    if proposals.shape[-1] != 4:
        raise ValueError(f"proposals must have shape [..., 4], got {tuple(proposals.shape)}")
    if targets.shape != proposals.shape:
        raise ValueError(f"targets must have proposals' shape {tuple(proposals.shape)}, got {tuple(targets.shape)}")
    w = _checks.box_weights(weights)
    dtype = torch.promote_types(proposals.dtype, targets.dtype)
    proposals, targets = proposals.to(dtype), targets.to(dtype)
    chosen = _backend.resolve(backend, proposals.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_encode(proposals, targets, w)
    shape = proposals.shape
    return torch.ops.dapo_fast.box_encode(proposals.reshape(-1, 4), targets.reshape(-1, 4), w).reshape(shape)


def box_decode(deltas: Tensor, boxes: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS,
               scale_clamp: float = DEFAULT_SCALE_CLAMP, *, backend: str = "auto") -> Tensor:
    """Boxes [..., 4 * k] obtained by applying ``deltas`` [..., 4 * k] to ``boxes`` [..., 4]
    (each of the k deltas of a row to that row's box); dw and dh are clamped at ``scale_clamp`` (a
    number, inf for no clamp; a NaN delta stays NaN)."""
    _boxes(deltas, "deltas")
    _boxes(boxes, "boxes", deltas.device)
    if boxes.shape[-1] != 4 or boxes.shape[:-1] != deltas.shape[:-1]:
        raise ValueError(f"boxes must have shape [..., 4] with the leading dimensions of deltas "
                         f"{tuple(deltas.shape)}, got {tuple(boxes.shape)}")
    w = _checks.box_weights(weights)
    scale_clamp = _checks.real(scale_clamp, "scale_clamp", allow_inf=True)
    deltas = deltas.to(torch.float64 if deltas.dtype == torch.float64 else torch.float32)
    boxes = boxes.to(deltas.dtype)
    shape = deltas.shape
    per_box = shape[-1] // 4
    if per_box != 1:  # one box row per delta row
        deltas = deltas.reshape(shape[:-1] + (per_box, 4))
        boxes = boxes.unsqueeze(-2).expand(deltas.shape)
    chosen = _backend.resolve(backend, deltas.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_decode(deltas, boxes, w, scale_clamp).reshape(shape)
    return torch.ops.dapo_fast.box_decode(deltas.reshape(-1, 4), boxes.reshape(-1, 4), w, scale_clamp).reshape(shape)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.box_encode.default, torch.ops.dapo_fast.box_encode_backward.default)
    _meta.register(torch.ops.dapo_fast.box_decode.default, torch.ops.dapo_fast.box_decode_backward.default)
