"""Box IoU (torchvision.ops.box_iou semantics, plus a batched form) and the box-accuracy metric.

Boxes are (x1, y1, x2, y2). As in torchvision: IoU = inter / (area_a + area_b - inter) with
areas (x2 - x1) * (y2 - y1) (not clamped, so a degenerate box gives 0/0 = NaN against another
degenerate box, and a reversed box a negative area), intersection clamped at 0.
"""
from typing import Sequence, Union

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import box_iou as _meta
from dapo_fast.ops._reference import box_iou as _reference

__all__ = ["box_iou", "box_accuracy"]


def box_iou(a: Tensor, b: Tensor, *, backend: str = "auto") -> Tensor:
    """Pairwise IoU.

    Args:
        a: Tensor[N, 4] or Tensor[B, N, 4].
        b: Tensor[M, 4] or Tensor[B, M, 4] (same rank and batch size as ``a``), same dtype.

    Returns:
        Tensor[N, M] (or [B, N, M]) of a's dtype. The kernel has no backward: when a or b needs a
        gradient, auto runs the (differentiable) reference.
    """
    _checks.tensor(a, "a")
    _checks.tensor(b, "b", device=a.device)
    if a.dim() not in (2, 3) or a.shape[-1] != 4:
        raise ValueError(f"a must have shape [N, 4] or [B, N, 4], got {tuple(a.shape)}")
    if b.dim() != a.dim() or b.shape[-1] != 4 or (a.dim() == 3 and b.shape[0] != a.shape[0]):
        raise ValueError(f"b must have shape {'[B, M, 4] with B = a.shape[0]' if a.dim() == 3 else '[M, 4]'} "
                         f"like a {tuple(a.shape)}, got {tuple(b.shape)}")
    _checks.same_dtype(a, "a", b, "b")
    needs_grad = torch.is_grad_enabled() and (a.requires_grad or b.requires_grad)
    if needs_grad and backend == "auto":
        backend = "reference"
    chosen = _backend.resolve(backend, a.device, has_triton=False)
    if chosen == "reference":
        return _reference.box_iou(a, b)
    if a.dim() == 2:
        return torch.ops.dapo_fast.box_iou(a[None], b[None])[0]
    return torch.ops.dapo_fast.box_iou(a, b)


def box_accuracy(pred_boxes: Tensor, gt_boxes: Union[Tensor, Sequence[Tensor]], threshold: float = 0.5) -> Tensor:
    """Hit when the predicted box has IoU >= threshold with any of its ground-truth boxes.

    Args:
        pred_boxes: Tensor[N, 4] (x1, y1, x2, y2), e.g. from heatmap_to_box rescaled to the image.
        gt_boxes: list of N Tensor[G_i, 4] or a Tensor[N, G, 4], same coordinate frame.
        threshold: IoU threshold (0.5 in DAPO, WWbL, ReIR).

    Returns:
        Tensor[N] bool; a map without ground-truth boxes is a miss. Computed in float64.
    """
    _checks.tensor(pred_boxes, "pred_boxes", dtypes=None)
    if pred_boxes.dim() != 2 or pred_boxes.shape[1] != 4:
        raise ValueError(f"pred_boxes must have shape [N, 4], got {tuple(pred_boxes.shape)}")
    n = pred_boxes.shape[0]
    boxes, owner = _checks.gt_boxes_per_map(gt_boxes, n, pred_boxes.device, "gt_boxes")
    # one IoU per (prediction, ground-truth box) pair: the [1, 1] IoU matrix of each
    iou = _reference.box_iou(pred_boxes.to(torch.float64)[owner, None], boxes.to(torch.float64)[:, None])[:, 0, 0]
    return _checks.any_per_map(iou >= threshold, owner, n)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.box_iou.default)
