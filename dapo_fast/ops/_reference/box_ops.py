"""Box ops in plain PyTorch: the specification (detectron2 Box2BoxTransform, ReIR's self-taught
regression targets, weighted smooth-L1). Boxes are (x1, y1, x2, y2); any leading dims."""
import math
from typing import Sequence, Tuple

import torch
from torch import Tensor

from dapo_fast.ops._reference.grounding_metrics import box_iou  # noqa: F401  (torchvision semantics, batched)

DEFAULT_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def _centers(boxes: Tensor):
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return w, h, boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h


def box_encode(proposals: Tensor, targets: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS) -> Tensor:
    """Deltas (dx, dy, dw, dh) that turn ``proposals`` into ``targets`` (Box2BoxTransform.get_deltas)."""
    wx, wy, ww, wh = weights
    sw, sh, sx, sy = _centers(proposals)
    tw, th, tx, ty = _centers(targets)
    dx = wx * (tx - sx) / sw
    dy = wy * (ty - sy) / sh
    dw = ww * torch.log(tw / sw)
    dh = wh * torch.log(th / sh)
    return torch.stack([dx, dy, dw, dh], dim=-1)


def box_decode(deltas: Tensor, boxes: Tensor, weights: Sequence[float] = DEFAULT_WEIGHTS,
               scale_clamp: float = DEFAULT_SCALE_CLAMP) -> Tensor:
    """Boxes from deltas (Box2BoxTransform.apply_deltas, one box per row)."""
    wx, wy, ww, wh = weights
    boxes = boxes.to(deltas.dtype)
    w, h, cx, cy = _centers(boxes)
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = torch.clamp(deltas[..., 2] / ww, max=scale_clamp)
    dh = torch.clamp(deltas[..., 3] / wh, max=scale_clamp)
    pcx = dx * w + cx
    pcy = dy * h + cy
    pw = torch.exp(dw) * w
    ph = torch.exp(dh) * h
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], dim=-1)


def self_taught_targets(boxes: Tensor, scores: Tensor, iou_threshold: float = 0.6, score_gap: float = 0.1,
                        weights: Sequence[float] = DEFAULT_WEIGHTS) -> Tuple[Tensor, Tensor]:
    """ReIR's pseudo regression targets.

    boxes [B, J, 4] proposals, scores [B, P, J] phrase-proposal scores. For each phrase p the most
    confident proposal j* (lowest index on ties) is the pseudo ground truth; proposal j != j*
    regresses toward it (weight 1, deltas = encode(box_j, box_j*)) when IoU(box_j, box_j*) >=
    iou_threshold and scores[j*] - scores[j] >= score_gap; otherwise weight 0 and deltas 0.
    Returns (deltas [B, P, J, 4], weights [B, P, J]) in boxes' dtype.
    """
    b, j = boxes.shape[0], boxes.shape[1]
    p = scores.shape[1]
    if j == 0:
        return boxes.new_zeros((b, p, 0, 4)), boxes.new_zeros((b, p, 0))
    best = scores.argmax(dim=-1)                                          # [B, P]
    pseudo = torch.gather(boxes, 1, best[..., None].expand(b, p, 4))     # [B, P, 4]
    iou = _pairwise_iou(boxes[:, None].expand(b, p, j, 4), pseudo[:, :, None, :].expand(b, p, j, 4))
    gap = torch.gather(scores, 2, best[..., None]) - scores               # [B, P, J]
    not_self = torch.arange(j, device=boxes.device)[None, None, :] != best[..., None]
    keep = (iou >= iou_threshold) & (gap >= score_gap) & not_self
    deltas = box_encode(boxes[:, None].expand(b, p, j, 4), pseudo[:, :, None, :].expand(b, p, j, 4), weights)
    deltas = torch.where(keep[..., None], deltas, torch.zeros_like(deltas))
    return deltas, keep.to(boxes.dtype)


def _pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of a[..., 4] with b[..., 4] elementwise (same formula as box_iou)."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    return inter / (area_a + area_b - inter)


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
