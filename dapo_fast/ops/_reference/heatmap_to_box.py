"""Heatmap -> box with OpenCV, one map at a time: the specification of heatmap_to_box (its rules
are in dapo_fast/ops/heatmap_to_box.py). Two protocols:

components  ours: connected components of the thresholded map, no colormap, no NMS
wwbl        WWbL's generate_bbox, step by step (colormap, 8-bit gray, contours, NMS)
"""
import functools
from typing import List

import numpy as np
import torch
from torch import Tensor

PROTOCOLS = ("components", "wwbl")
# WWbL's generate_bbox default (evaluation calls it with the defaults)
WWBL_NMS_THRESHOLD = 0.05
# WWbL's box when the thresholded map has no contour (a flat map, whose 0/0 normalisation is NaN,
# or nothing above the cut)
WWBL_EMPTY_BOX = (0.0, 0.0, 1.0, 1.0)


def heatmap_to_box_one(heat: np.ndarray, rel_threshold: float = 0.5, conf_threshold: float = 0.5,
                       tozero: bool = False) -> List[float]:
    """One map, the components protocol, with the rules heatmap_to_box documents."""
    import cv2

    heat = heat.astype(np.float64)
    if not np.isfinite(heat).all():  # no peak to normalise by: the box is undefined
        return [float("nan")] * 4
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


@functools.lru_cache(maxsize=None)
def wwbl_gray_table() -> np.ndarray:
    """uint8[256]: the 8-bit gray WWbL gives each colormap entry. WWbL colours the normalised map
    with matplotlib's 'cubehelix' (256 entries), scales the RGB to float32 * 255 and truncates to
    uint8, then converts RGB to gray with OpenCV's (4.x and later) fixed-point rule
    (9798 R + 19235 G + 3735 B + 2^14) >> 15."""
    import matplotlib

    rgb = matplotlib.colormaps["cubehelix"](np.arange(256))[:, :3]
    rgb = (rgb.astype(np.float32) * np.float32(255.0)).astype(np.uint8).astype(np.int64)
    return ((rgb @ np.array([9798, 19235, 3735]) + (1 << 14)) >> 15).astype(np.uint8)


def wwbl_gray(heat: np.ndarray) -> np.ndarray:
    """The 8-bit gray image of a map with max > min: min-max normalised in float64, colormap entry
    int(v * 256) (256 -> 255, matplotlib's rule), its gray."""
    heat = heat.astype(np.float64)
    norm = (heat - heat.min()) / (heat.max() - heat.min())
    index = np.minimum((norm * 256).astype(np.int64), 255)
    return wwbl_gray_table()[index]


def nms_corner_form(rects: List[tuple], scores: np.ndarray, iou_threshold: float) -> List[int]:
    """torchvision.ops.nms on WWbL's (x, y, w, h) tuples read as corner boxes (x1, y1, x2, y2):
    float32 arithmetic, candidates in the order of torch's descending sort of the float32 scores,
    a candidate suppressed by a kept one when IoU > iou_threshold. Returns the kept indices."""
    boxes = np.asarray(rects, dtype=np.float32).reshape(-1, 4)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    order = torch.from_numpy(scores.astype(np.float32)).sort(0, descending=True)[1].tolist()
    suppressed = [False] * len(order)
    keep = []
    zero = np.float32(0)
    for position, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[position + 1:]:
            if suppressed[j]:
                continue
            w = max(zero, min(x2[i], x2[j]) - max(x1[i], x1[j]))
            h = max(zero, min(y2[i], y2[j]) - max(y1[i], y1[j]))
            inter = w * h
            with np.errstate(divide="ignore", invalid="ignore"):
                overlap = inter / (areas[i] + areas[j] - inter)
            if float(overlap) > iou_threshold:  # compared in double, as torchvision's kernel does
                suppressed[j] = True
    return keep


def heatmap_to_box_wwbl_one(heat: np.ndarray, threshold: float = 0.5, conf_threshold: float = 0.5) -> List[float]:
    """One map, WWbL's generate_bbox + union of its boxes (its calc_correctness):

    1. the 8-bit gray image (:func:`wwbl_gray`);
    2. keep the gray values > int(threshold * max gray), others 0 (cv2.THRESH_TOZERO);
    3. every contour of the kept pixels, hole contours included (cv2.RETR_TREE), and its bounding
       rectangle (x, y, w, h);
    4. confidence = mean of the kept gray over the rectangle / 255 (float64);
    5. NMS at IoU 0.05 over the (x, y, w, h) tuples read as corner boxes (:func:`nms_corner_form`);
    6. of the NMS survivors, those with confidence > conf_threshold * the largest confidence of all
       rectangles;
    7. the union box (x1, y1, x1 + w, y1 + h) of the survivors.

    No contour (a flat map, or rel_threshold 1) or no rectangle kept (conf_threshold >= 1): WWbL's
    box (0, 0, 1, 1). A map with NaN or +-Inf gives a NaN box (its min-max normalisation is
    undefined), as with the components protocol.
    """
    import cv2

    heat = heat.astype(np.float64)
    if not np.isfinite(heat).all():
        return [float("nan")] * 4
    if not heat.max() > heat.min():
        return list(WWBL_EMPTY_BOX)
    gray = wwbl_gray(heat)
    cut = int(threshold * int(gray.max()))
    kept = np.where(gray > cut, gray, 0).astype(np.uint8)
    contours, _ = cv2.findContours(kept, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:  # nothing above the cut (rel_threshold 1)
        return list(WWBL_EMPTY_BOX)
    rects = [tuple(int(v) for v in cv2.boundingRect(c)) for c in contours]
    confs = np.array([int(kept[y:y + h, x:x + w].sum()) / (w * h) / 255 for x, y, w, h in rects])
    survivors = nms_corner_form(rects, confs, WWBL_NMS_THRESHOLD)
    best = confs.max()
    chosen = [rects[i] for i in survivors if confs[i] > conf_threshold * best]
    if not chosen:  # nothing above conf_threshold * best (conf_threshold >= 1): the default box
        return list(WWBL_EMPTY_BOX)
    return [float(min(x for x, _, _, _ in chosen)), float(min(y for _, y, _, _ in chosen)),
            float(max(x + w for x, _, w, _ in chosen)), float(max(y + h for _, y, _, h in chosen))]


def heatmap_to_box(heatmaps: Tensor, rel_threshold: float = 0.5, conf_threshold: float = 0.5,
                   tozero: bool = False, protocol: str = "components") -> Tensor:
    maps = heatmaps.detach().cpu().to(torch.float64).numpy()
    if protocol == "wwbl":
        rows = [heatmap_to_box_wwbl_one(m, rel_threshold, conf_threshold) for m in maps]
    else:
        rows = [heatmap_to_box_one(m, rel_threshold, conf_threshold, tozero) for m in maps]
    out = torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)
    return out.to(heatmaps.device)
