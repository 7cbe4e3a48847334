"""Box deltas in plain PyTorch: the specification (detectron2's Box2BoxTransform). Boxes are
(x1, y1, x2, y2); any leading dims."""
import math
from typing import Sequence

import torch
from torch import Tensor

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
