"""WWbL's heatmap -> box procedure with OpenCV connected components, like the original code: the
specification of heatmap_to_box (its rules are in dapo_fast/ops/heatmap_to_box.py)."""
from typing import List

import numpy as np
import torch
from torch import Tensor


def heatmap_to_box_one(heat: np.ndarray, rel_threshold: float = 0.5, conf_threshold: float = 0.5,
                       tozero: bool = False) -> List[float]:
    """One map, the original code's way (OpenCV), with the rules heatmap_to_box documents."""
    import cv2

    heat = heat.astype(np.float64)
    lo, hi = heat.min(), heat.max()
    norm = (heat - lo) / (hi - lo) if hi > lo else np.ones_like(heat)  # flat map: every pixel is the peak
    keep = norm >= rel_threshold
    if not keep.any():
        return [float("nan")] * 4
    score = np.where(keep, norm, 0.0) if tozero else norm
    count, _, stats, _ = cv2.connectedComponentsWithStats(keep.astype(np.uint8), connectivity=8)
    boxes, confs = [], []
    for label in range(1, count):
        x, y, w, h = (int(v) for v in stats[label, :4])
        boxes.append((x, y, x + w, y + h))
        confs.append(float(score[y:y + h, x:x + w].sum()) / (w * h))
    best = max(confs)
    kept = [b for b, c in zip(boxes, confs) if c > conf_threshold * best or c == best]
    return [float(min(b[0] for b in kept)), float(min(b[1] for b in kept)),
            float(max(b[2] for b in kept)), float(max(b[3] for b in kept))]


def heatmap_to_box(heatmaps: Tensor, rel_threshold: float = 0.5, conf_threshold: float = 0.5,
                   tozero: bool = False) -> Tensor:
    maps = heatmaps.detach().cpu().to(torch.float64).numpy()
    rows = [heatmap_to_box_one(m, rel_threshold, conf_threshold, tozero) for m in maps]
    out = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    return out.to(heatmaps.device)
