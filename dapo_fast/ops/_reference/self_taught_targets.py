"""ReIR's self-taught regression targets in plain PyTorch: the specification."""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from dapo_fast.ops._reference.box_coder import DEFAULT_WEIGHTS, box_encode
from dapo_fast.ops._reference.box_iou import box_iou


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
    iou = box_iou(boxes[:, None], pseudo[:, :, None, :])[..., 0]          # [B, P, J]
    gap = torch.gather(scores, 2, best[..., None]) - scores               # [B, P, J]
    not_self = torch.arange(j, device=boxes.device)[None, None, :] != best[..., None]
    keep = (iou >= iou_threshold) & (gap >= score_gap) & not_self
    deltas = box_encode(boxes[:, None].expand(b, p, j, 4), pseudo[:, :, None, :].expand(b, p, j, 4), weights)
    deltas = torch.where(keep[..., None], deltas, torch.zeros_like(deltas))
    return deltas, keep.to(boxes.dtype)
