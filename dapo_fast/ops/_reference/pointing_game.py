"""Pointing game in plain PyTorch: the specification of the batched pointing-game ops.

resized_argmax       peak (row, col) of each heatmap after a bilinear resize to its image size
                     (OpenCV's / torch's align_corners=False rule), evaluated at every output
                     pixel in float64. Tie rule: the first maximum in row-major order.
pointing_game        the peak is inside any ground-truth box, bounds inclusive (WWbL's isCorrectHit)
pointing_game_masks  the peak is inside the ground-truth mask (PCNet's PointM)
"""
from typing import Sequence

import torch
from torch import Tensor


def _axis_table(out_size: int, in_size: int):
    """For each output index: the two source indices and their weights (torch/OpenCV bilinear rule)."""
    scale = float(in_size) / float(out_size)
    dst = torch.arange(out_size, dtype=torch.float64)
    src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)
    low = src.to(torch.int64).clamp(max=in_size - 1)
    high = torch.where(low < in_size - 1, low + 1, low)
    w_high = src - low.to(torch.float64)
    w_high = torch.where(low < in_size - 1, w_high, torch.zeros_like(w_high))
    w_low = 1.0 - w_high
    return low, high, w_low, w_high


def bilinear_resize(heatmap: Tensor, height: int, width: int) -> Tensor:
    """[h, w] -> [height, width] float64, written out so each rounding step is explicit:
    value = wy0 * (wx0 * a + wx1 * b) + wy1 * (wx0 * c + wx1 * d)."""
    src = heatmap.to(torch.float64)
    y0, y1, wy0, wy1 = _axis_table(height, src.shape[0])
    x0, x1, wx0, wx1 = _axis_table(width, src.shape[1])
    top = wx0[None, :] * src[y0][:, x0] + wx1[None, :] * src[y0][:, x1]
    bottom = wx0[None, :] * src[y1][:, x0] + wx1[None, :] * src[y1][:, x1]
    return wy0[:, None] * top + wy1[:, None] * bottom


def resized_argmax(heatmaps: Tensor, sizes: Tensor) -> Tensor:
    """heatmaps [N, h, w], sizes [N, 2] (height, width) -> [N, 2] int64 (row, col) in the resized map."""
    out = torch.empty((heatmaps.shape[0], 2), dtype=torch.int64)
    for i in range(heatmaps.shape[0]):
        height, width = int(sizes[i, 0]), int(sizes[i, 1])
        resized = bilinear_resize(heatmaps[i].cpu(), height, width)
        flat = int(torch.argmax(resized.reshape(-1)))  # first maximum in row-major order
        out[i, 0], out[i, 1] = flat // width, flat % width
    return out.to(heatmaps.device)


def pointing_game(heatmaps: Tensor, gt_boxes: Sequence[Tensor], image_sizes: Tensor) -> Tensor:
    peaks = resized_argmax(heatmaps, image_sizes).cpu()
    hits = []
    for i, boxes in enumerate(gt_boxes):
        y, x = float(peaks[i, 0]), float(peaks[i, 1])
        b = boxes.detach().to(torch.float64).cpu()
        inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])
        hits.append(bool(inside.any()))
    return torch.tensor(hits, dtype=torch.bool, device=heatmaps.device)


def pointing_game_masks(heatmaps: Tensor, gt_masks: Sequence[Tensor]) -> Tensor:
    sizes = torch.tensor([list(m.shape) for m in gt_masks], dtype=torch.int64).reshape(-1, 2)
    peaks = resized_argmax(heatmaps, sizes).cpu()
    hits = [bool(m.cpu()[int(peaks[i, 0]), int(peaks[i, 1])]) for i, m in enumerate(gt_masks)]
    return torch.tensor(hits, dtype=torch.bool, device=heatmaps.device)
