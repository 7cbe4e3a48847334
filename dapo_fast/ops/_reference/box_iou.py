"""Box IoU (torchvision.ops.box_iou semantics, batched) and box accuracy in plain PyTorch: the
specification. Boxes are (x1, y1, x2, y2)."""
from typing import Sequence

import torch
from torch import Tensor


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """torchvision.ops.box_iou semantics, with a leading batch dimension allowed: [..., N, 4] x [..., M, 4]."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter)


def box_accuracy(pred_boxes: Tensor, gt_boxes: Sequence[Tensor], threshold: float = 0.5) -> Tensor:
    """IoU of the predicted box with any ground-truth box >= threshold, in float64, one map at a time."""
    hits = []
    for i, boxes in enumerate(gt_boxes):
        iou = box_iou(pred_boxes[i:i + 1].to(torch.float64), boxes.to(pred_boxes.device, torch.float64))
        hits.append(bool((iou >= threshold).any()))
    return torch.tensor(hits, dtype=torch.bool, device=pred_boxes.device)
