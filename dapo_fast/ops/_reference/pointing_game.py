"""Pointing game in plain PyTorch: the specification of the batched pointing-game ops.

resized_argmax       peak (row, col) of each heatmap after a bilinear resize to its image size
                     (OpenCV's / torch's align_corners=False rule, or torch's align_corners=True),
                     evaluated at every output pixel in float64. Tie rule: the first maximum in
                     row-major order.
pointing_game        the peak is inside any ground-truth box, bounds inclusive (WWbL's isCorrectHit)
pointing_game_masks  the peak is inside the ground-truth mask (PCNet's PointM)

Exact ties: the resize is two linear interpolations, along x then y, and each one returns its
first endpoint when the far weight is 0 (it reads nothing there: a +inf neighbour of a pixel
sampled exactly on a source pixel makes no 0 * inf = NaN) and the common value when both endpoints
are equal. So output pixels whose values are mathematically equal because they read equal taps (a
plateau at the maximum, rows or columns repeated in the source) are equal bit for bit, whatever
float64 rounding of their weights would do, and the first of them in row-major order is the peak
(what OpenCV's resize gives on such maps). NaN (a NaN tap read, or +inf with -inf) counts as the
maximum, as in torch.argmax: the first NaN pixel wins.
"""
from typing import Sequence

import torch
from torch import Tensor


def _axis_table(out_size: int, in_size: int, align_corners: bool = False):
    """For each output index: the two source indices and their weights (torch's bilinear rule;
    OpenCV's too when not align_corners)."""
    dst = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        scale = float(in_size - 1) / float(out_size - 1) if out_size > 1 else 0.0
        src = scale * dst
    else:
        scale = float(in_size) / float(out_size)
        src = ((dst + 0.5) * scale - 0.5).clamp(min=0.0)
    low = src.to(torch.int64).clamp(max=in_size - 1)
    high = torch.where(low < in_size - 1, low + 1, low)
    w_high = src - low.to(torch.float64)
    w_high = torch.where(low < in_size - 1, w_high, torch.zeros_like(w_high))
    w_low = 1.0 - w_high
    return low, high, w_low, w_high


def lerp(low: Tensor, high: Tensor, w_low: Tensor, w_high: Tensor) -> Tensor:
    """w_low * low + w_high * high, exact where it reads one value: low when w_high is 0, the
    common value when low == high."""
    return torch.where((w_high == 0) | (low == high), low, w_low * low + w_high * high)


def bilinear_resize(heatmap: Tensor, height: int, width: int, align_corners: bool = False) -> Tensor:
    """[h, w] -> [height, width] float64: along x, then along y, each step a :func:`lerp`."""
    src = heatmap.to(torch.float64)
    y0, y1, wy0, wy1 = _axis_table(height, src.shape[0], align_corners)
    x0, x1, wx0, wx1 = _axis_table(width, src.shape[1], align_corners)
    top = lerp(src[y0][:, x0], src[y0][:, x1], wx0[None, :], wx1[None, :])
    bottom = lerp(src[y1][:, x0], src[y1][:, x1], wx0[None, :], wx1[None, :])
    return lerp(top, bottom, wy0[:, None], wy1[:, None])


def resized_argmax(heatmaps: Tensor, sizes: Tensor, align_corners: bool = False) -> Tensor:
    """heatmaps [N, h, w], sizes [N, 2] (height, width) -> [N, 2] int64 (row, col) in the resized map."""
    out = torch.empty((heatmaps.shape[0], 2), dtype=torch.int64)
    for i in range(heatmaps.shape[0]):
        height, width = int(sizes[i, 0]), int(sizes[i, 1])
        resized = bilinear_resize(heatmaps[i].cpu(), height, width, align_corners).reshape(-1)
        nan = torch.isnan(resized)
        # first NaN, else the first maximum in row-major order (argmax of a 0/1 tensor: the first 1)
        flat = int(nan.to(torch.int8).argmax()) if nan.any() else int(torch.argmax(resized))
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


def pointing_game_masks(heatmaps: Tensor, gt_masks: Sequence[Tensor], align_corners: bool = False) -> Tensor:
    sizes = torch.tensor([list(m.shape) for m in gt_masks], dtype=torch.int64).reshape(-1, 2)
    peaks = resized_argmax(heatmaps, sizes, align_corners).cpu()
    hits = [bool(m.cpu()[int(peaks[i, 0]), int(peaks[i, 1])]) for i, m in enumerate(gt_masks)]
    return torch.tensor(hits, dtype=torch.bool, device=heatmaps.device)
