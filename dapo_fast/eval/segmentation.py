"""Referring segmentation metrics (TRIS / PCNet): PointM, mIoU and oIoU, overall and per
object-count subset, through the metric ops; and a PNG of response maps with the ground-truth
mask outline.

PointM: the peak of the response map (of its logits where the map is all zero), resized bilinearly
to the mask, lies inside the ground-truth mask (:func:`dapo_fast.ops.pointing_game_masks`). Reported with both resize rules:
``align_corners=False`` (torch's and OpenCV's default; ``pointm``) and ``align_corners=True``
(PCNet's evaluation code; ``pointm_align_corners``). The two differ on maps whose peak sits near a
mask's border: the rules place the low-resolution samples half a cell apart.

mIoU / oIoU: the response map resized bilinearly (align_corners=False) to the mask, divided by its
peak and thresholded (pixels > ``threshold``; 0 is TRIS's and PCNet's rule: every positive
response); mIoU is the mean of the per-map I/U, oIoU = sum I / sum U.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from dapo_fast.eval.grounding import SUBSET_NAMES, by_subset
from dapo_fast.eval.stats import percent_with_intervals
from dapo_fast.ops import pointing_game_masks

__all__ = ["mask_scores", "summarise", "save_response_grid", "SUBSET_NAMES"]


def _resized(heatmaps: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(heatmaps[:, None].float(), size=tuple(int(v) for v in size), mode="bilinear",
                         align_corners=False)[:, 0]


def mask_scores(heatmaps: torch.Tensor, gt_masks: Sequence[torch.Tensor], threshold: float = 0.0,
                peaks_of: Optional[torch.Tensor] = None) -> Dict:
    """Per map: PointM hits under both resize rules, intersection and union of the thresholded map.

    Args:
        heatmaps: Tensor[N, h, w] non-negative response maps (any scale).
        gt_masks: N masks Tensor[H_i, W_i] (bool or 0/1).
        threshold: fraction of each map's peak; pixels above it form the predicted mask.
        peaks_of: Tensor[N, h, w] maps whose peak PointM takes (default ``heatmaps``; the methods
            here pass the logits of the maps that are all zero, whose peak is otherwise undefined).

    Returns:
        {"hit", "hit_align_corners": Tensor[N] bool, "inter", "union": Tensor[N] float64}.
    """
    if len(gt_masks) != heatmaps.shape[0]:
        raise ValueError(f"gt_masks must hold one mask per heatmap ({heatmaps.shape[0]}), got {len(gt_masks)}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    masks = [m.to(torch.bool) for m in gt_masks]
    peaks_of = heatmaps if peaks_of is None else peaks_of
    hit = pointing_game_masks(peaks_of, masks)
    hit_ac = pointing_game_masks(peaks_of, masks, align_corners=True)
    n = heatmaps.shape[0]
    inter = torch.zeros(n, dtype=torch.float64)
    union = torch.zeros(n, dtype=torch.float64)
    sizes = torch.tensor([list(m.shape) for m in masks], dtype=torch.long).reshape(n, 2)
    for size in torch.unique(sizes, dim=0):
        rows = (sizes == size).all(1).nonzero().flatten()
        resized = _resized(heatmaps[rows], size)
        peak = resized.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]
        pred = resized / peak > threshold
        gt = torch.stack([masks[int(r)] for r in rows])
        inter[rows] = (pred & gt).flatten(1).sum(1).double()
        union[rows] = (pred | gt).flatten(1).sum(1).double()
    return dict(hit=hit, hit_align_corners=hit_ac, inter=inter, union=union)


def summarise(scores: Dict, num_objects: torch.Tensor) -> Dict:
    """{"pointm", "pointm_align_corners", "miou", "oiou" (percent), "maps", "subsets": {name: same}}
    over every map and per object-count subset of the maps' images; PointM and mIoU with their 95%
    bootstrap interval over the maps ("<key>_ci": [low, high])."""
    iou = scores["inter"] / scores["union"].clamp_min(1)
    per_map = dict(pointm=scores["hit"].double(), pointm_align_corners=scores["hit_align_corners"].double(), miou=iou)

    def one(mask: torch.Tensor) -> Dict:
        k = int(mask.sum())
        if k == 0:
            nan = float("nan")
            return dict(pointm=nan, pointm_align_corners=nan, miou=nan, oiou=nan, maps=0)
        return dict(oiou=100.0 * float(scores["inter"][mask].sum() / scores["union"][mask].sum().clamp_min(1)), maps=k,
                    **percent_with_intervals({name: values[mask] for name, values in per_map.items()}))

    return by_subset(one, num_objects)


def save_response_grid(images: List[torch.Tensor], maps: torch.Tensor, gt_masks: List[torch.Tensor],
                       expressions: List[str], stage_titles: Optional[List[List[str]]], path: str) -> str:
    """PNG: one row per expression, one column per stage; each panel is the image with the stage's
    response map (resized to the image, opacity following the response), the ground-truth mask's
    outline (lime) and the map's peak (a green square, as PCNet's figures).

    Args:
        images: K uint8 Tensor[3, H, W]; maps: Tensor[K, N, h, w]; gt_masks: K Tensor[H, W].
        expressions: K row titles; stage_titles: K lists of N panel titles (e.g. the cues) or None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k, n = maps.shape[:2]
    fig, axes = plt.subplots(k, n, figsize=(2.8 * n, 3.0 * k), squeeze=False)
    for row in range(k):
        img = images[row]
        h, w = img.shape[-2:]
        resized = _resized(maps[row].detach().cpu(), (h, w))
        mask = gt_masks[row].to(torch.float32).cpu().numpy()
        for col in range(n):
            ax = axes[row, col]
            ax.axis("off")
            rel = resized[col] / resized[col].max().clamp_min(1e-12)
            ax.imshow(img.permute(1, 2, 0).cpu().numpy())
            ax.imshow(rel.numpy(), cmap="jet", alpha=(0.7 * rel).numpy(), vmin=0, vmax=1)
            ax.contour(mask, levels=[0.5], colors="lime", linewidths=1.2)
            peak = int(resized[col].flatten().argmax())
            ax.plot(peak % w, peak // w, marker="s", markersize=6, markerfacecolor="none", markeredgecolor="#00ff00",
                    markeredgewidth=1.5)
            title = stage_titles[row][col] if stage_titles else f"stage {col}"
            ax.set_title(f"{expressions[row]}\n{title}" if col == 0 else title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
