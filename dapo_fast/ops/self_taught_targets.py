"""ReIR's self-taught regression targets, batched over images and phrases.

For each phrase p of image b the most confident proposal j* = argmax_j scores[b, p, j] (lowest
index on ties) is the pseudo ground truth. Every other proposal j regresses toward it, with
weight 1 and deltas = box_encode(boxes[b, j], boxes[b, j*]), when

    IoU(boxes[b, j], boxes[b, j*]) >= iou_threshold   and   scores[b, p, j*] - scores[b, p, j] >= score_gap

and has weight 0 and zero deltas otherwise (j* itself included). Targets: no autograd.
Backends ``cpu`` (C++), ``cuda``, ``reference``.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import self_taught_targets as _meta
from dapo_fast.ops._reference import self_taught_targets as _reference
from dapo_fast.ops._reference.box_coder import DEFAULT_WEIGHTS

__all__ = ["self_taught_targets"]


def self_taught_targets(boxes: Tensor, scores: Tensor, iou_threshold: float = 0.6, score_gap: float = 0.1,
                        weights: Sequence[float] = DEFAULT_WEIGHTS, *, backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """Args:
        boxes: Tensor[B, J, 4] proposals (x1, y1, x2, y2).
        scores: Tensor[B, P, J] phrase-proposal scores (any float dtype; compared in boxes' dtype).
        iou_threshold, score_gap: the two conditions above (ReIR: 0.6 and 0.1).
        weights: delta weights (wx, wy, ww, wh).

    Returns:
        (deltas Tensor[B, P, J, 4], weights Tensor[B, P, J]) in boxes' dtype.
    """
    _checks.tensor(boxes, "boxes", dim=3)
    _checks.tensor(scores, "scores", dim=3, device=boxes.device)
    if boxes.shape[2] != 4:
        raise ValueError(f"boxes must have shape [B, J, 4], got {tuple(boxes.shape)}")
    if scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ValueError(f"scores must have shape [B, P, J] with boxes [B, J, 4] = {tuple(boxes.shape)}, "
                         f"got {tuple(scores.shape)}")
    w = _checks.box_weights(weights)
    chosen = _backend.resolve(backend, boxes.device, has_triton=False)
    boxes, scores = boxes.detach(), scores.detach().to(boxes.dtype)
    if chosen == "reference":
        return _reference.self_taught_targets(boxes, scores, float(iou_threshold), float(score_gap), w)
    return torch.ops.dapo_fast.self_taught_targets(boxes, scores, float(iou_threshold), float(score_gap), w)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.self_taught_targets.default)
