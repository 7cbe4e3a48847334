"""Pointing game (WWbL / DAPO) and PCNet's PointM, batched over maps.

The peak of every heatmap is found on the map bilinearly resized to its image (or mask) size,
exactly: the C++ kernel evaluates the same resized values as a full resize (torch's / OpenCV's
align_corners=False rule, computed in float64) but only where the peak can be, so nothing
[N, H, W]-sized is ever materialised.

Tie rule: among equal maxima of the resized map the first in row-major order wins (what
``argmax`` of the resized map gives). A flat map therefore points at (0, 0).
"""
from typing import Sequence, Union

import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import pointing_game as _meta
from dapo_fast.ops._reference import pointing_game as _reference

__all__ = ["resized_argmax", "pointing_game", "pointing_game_masks"]

BoxesType = Union[Tensor, Sequence[Tensor]]


def _sizes_tensor(sizes, name: str, n: int, device: torch.device) -> Tensor:
    if not isinstance(sizes, Tensor):
        sizes = torch.as_tensor(sizes)
    if sizes.dtype.is_complex or sizes.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer (height, width) pairs, got dtype {sizes.dtype}")
    if sizes.dim() == 1 and sizes.shape[0] == 2:
        sizes = sizes.expand(n, 2)
    if sizes.dim() != 2 or sizes.shape[1] != 2 or sizes.shape[0] != n:
        raise ValueError(f"{name} must have shape [N, 2] (height, width) with N = {n}, got {tuple(sizes.shape)}")
    return sizes.to(device=device, dtype=torch.int64)


def resized_argmax(heatmaps: Tensor, sizes, *, backend: str = "auto") -> Tensor:
    """(row, col) of the maximum of each heatmap resized bilinearly to its own size.

    Args:
        heatmaps: Tensor[N, h, w], any float dtype (computed in float64).
        sizes: Tensor[N, 2] (or one (height, width) pair for all) output sizes, positive ints.
        backend: "auto" | "cpu" | "cuda" | "reference".

    Returns:
        Tensor[N, 2] int64 (row, col) in the resized map; tie rule in the module docstring.
    """
    _checks.tensor(heatmaps, "heatmaps", dim=3)
    sizes = _sizes_tensor(sizes, "sizes", heatmaps.shape[0], heatmaps.device)
    if heatmaps.shape[0] and (heatmaps.shape[1] == 0 or heatmaps.shape[2] == 0):
        raise ValueError(f"heatmaps must have a non-empty map size, got {tuple(heatmaps.shape)}")
    chosen = _backend.resolve(backend, heatmaps.device, has_triton=False)
    if chosen == "reference":
        return _reference.resized_argmax(heatmaps, sizes)
    return torch.ops.dapo_fast.resized_argmax(heatmaps, sizes)


def pointing_game(heatmaps: Tensor, gt_boxes: BoxesType, image_sizes, *, return_peaks: bool = False,
                  backend: str = "auto"):
    """Hit when the peak of the heatmap, resized to the image, lies in any ground-truth box.

    Args:
        heatmaps: Tensor[N, h, w].
        gt_boxes: list of N Tensor[G_i, 4] (x1, y1, x2, y2 in image pixels), or Tensor[N, G, 4].
            Bounds are inclusive: x1 <= col <= x2 and y1 <= row <= y2 (WWbL's isCorrectHit).
        image_sizes: Tensor[N, 2] (height, width) of each image.
        return_peaks: also return the Tensor[N, 2] (row, col) peaks.

    Returns:
        Tensor[N] bool (and the peaks when asked). A map with no boxes is a miss.
    """
    _checks.tensor(heatmaps, "heatmaps", dim=3)
    n = heatmaps.shape[0]
    sizes = _sizes_tensor(image_sizes, "image_sizes", n, heatmaps.device)
    boxes, owner = _checks.gt_boxes_per_map(gt_boxes, n, heatmaps.device, "gt_boxes")
    peaks = resized_argmax(heatmaps, sizes, backend=backend)
    p = peaks[owner].to(boxes.dtype if boxes.is_floating_point() else torch.float64)
    b = boxes.to(p.dtype)
    inside = (b[:, 0] <= p[:, 1]) & (p[:, 1] <= b[:, 2]) & (b[:, 1] <= p[:, 0]) & (p[:, 0] <= b[:, 3])
    hits = _checks.any_per_map(inside, owner, n)
    return (hits, peaks) if return_peaks else hits


def pointing_game_masks(heatmaps: Tensor, gt_masks: Union[Tensor, Sequence[Tensor]], *, return_peaks: bool = False,
                        backend: str = "auto"):
    """PCNet's PointM: hit when the peak of the heatmap, resized to the mask, is inside the mask.

    Args:
        heatmaps: Tensor[N, h, w].
        gt_masks: Tensor[N, H, W] or a list of N Tensor[H_i, W_i] (bool or 0/1 numbers).

    Returns:
        Tensor[N] bool (and the Tensor[N, 2] (row, col) peaks when return_peaks).
    """
    _checks.tensor(heatmaps, "heatmaps", dim=3)
    n = heatmaps.shape[0]
    if isinstance(gt_masks, Tensor):
        _checks.tensor(gt_masks, "gt_masks", dtypes=None)
        if gt_masks.dim() != 3 or gt_masks.shape[0] != n:
            raise ValueError(f"gt_masks must have shape [N, H, W] with N = {n}, got {tuple(gt_masks.shape)}")
        peaks = resized_argmax(heatmaps, list(gt_masks.shape[1:]), backend=backend)
        m = gt_masks.to(heatmaps.device)
        hits = m[torch.arange(n, device=m.device), peaks[:, 0], peaks[:, 1]] != 0
        return (hits, peaks) if return_peaks else hits
    if not isinstance(gt_masks, (list, tuple)):
        raise TypeError(f"gt_masks must be a Tensor[N, H, W] or a list of Tensor[H, W], got {type(gt_masks).__name__}")
    if len(gt_masks) != n:
        raise ValueError(f"gt_masks must have one mask per heatmap ({n}), got {len(gt_masks)}")
    for i, m in enumerate(gt_masks):
        _checks.tensor(m, f"gt_masks[{i}]", dim=2, dtypes=None)
    if n == 0:
        peaks = torch.empty((0, 2), dtype=torch.int64, device=heatmaps.device)
        hits = torch.empty((0,), dtype=torch.bool, device=heatmaps.device)
        return (hits, peaks) if return_peaks else hits
    sizes = torch.tensor([list(m.shape) for m in gt_masks], dtype=torch.int64)
    peaks = resized_argmax(heatmaps, sizes, backend=backend)
    flat = torch.cat([(m != 0).reshape(-1).to(heatmaps.device) for m in gt_masks])
    offsets = torch.cumsum(sizes[:, 0] * sizes[:, 1], 0) - sizes[:, 0] * sizes[:, 1]
    index = offsets.to(heatmaps.device) + peaks[:, 0] * sizes[:, 1].to(heatmaps.device) + peaks[:, 1]
    hits = flat[index]
    return (hits, peaks) if return_peaks else hits


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.resized_argmax.default)
