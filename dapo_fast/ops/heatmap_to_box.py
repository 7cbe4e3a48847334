"""Heatmap -> box, WWbL's procedure (what DAPO's bbox accuracy uses), batched over maps.

Per map:
1. min-max normalise (a flat map is 1 everywhere: every pixel is the peak);
2. keep the pixels with normalised heat >= rel_threshold (= rel_threshold * max, the max being 1);
3. connected components of the kept pixels, 8-connectivity;
4. a box per component (inclusive-exclusive: x2 = x + w, y2 = y + h, as from cv2.boundingRect);
5. confidence = mean normalised heat over the component's box (all its pixels; with
   ``tozero=True`` pixels under the threshold count as 0, like the original code's
   cv2.THRESH_TOZERO map);
6. keep the components with confidence > conf_threshold * max confidence (strict; the most
   confident component always stays, also when conf_threshold >= 1);
7. predict the union box of the kept components, in heatmap pixel coordinates.

Tie rule: a component whose confidence equals conf_threshold * max exactly is dropped; equal
confidences are all kept. Confidences are float64 sums; a component within ~1e-15 (relative) of
the cut may fall differently between backends (never seen on the test maps).
Differences from the original code (documented, on purpose): no colormap/uint8 quantisation,
connected components instead of RETR_TREE contours (hole contours add no box), no NMS.
A map containing NaN gives a NaN box.
"""
import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import heatmap_to_box as _meta
from dapo_fast.ops._reference import heatmap_to_box as _reference

__all__ = ["heatmap_to_box"]


def heatmap_to_box(heatmaps: Tensor, rel_threshold: float = 0.5, conf_threshold: float = 0.5, *,
                   tozero: bool = False, backend: str = "auto") -> Tensor:
    """One box per heatmap (see the module docstring for the exact procedure).

    Args:
        heatmaps: Tensor[N, h, w], any float dtype (computed in float64).
        rel_threshold: in [0, 1], pixels kept at normalised heat >= rel_threshold.
        conf_threshold: >= 0, components kept at confidence > conf_threshold * max confidence.
        tozero: score sub-threshold pixels of a box as 0 (the original code's form).
        backend: "auto" | "cpu" | "reference" (OpenCV, one map at a time).

    Returns:
        Tensor[N, 4] float32 (x1, y1, x2, y2) in heatmap pixels, x2/y2 exclusive.
    """
    _checks.tensor(heatmaps, "heatmaps", dim=3)
    rel_threshold = float(rel_threshold)
    conf_threshold = float(conf_threshold)
    if not 0.0 <= rel_threshold <= 1.0:
        raise ValueError(f"rel_threshold must be in [0, 1], got {rel_threshold}")
    if not conf_threshold >= 0.0:
        raise ValueError(f"conf_threshold must be >= 0, got {conf_threshold}")
    if heatmaps.shape[0] and (heatmaps.shape[1] == 0 or heatmaps.shape[2] == 0):
        raise ValueError(f"heatmaps must have a non-empty map size, got {tuple(heatmaps.shape)}")
    chosen = _backend.resolve(backend, heatmaps.device, has_triton=False)
    if chosen == "reference":
        return _reference.heatmap_to_box(heatmaps, rel_threshold, conf_threshold, bool(tozero))
    return torch.ops.dapo_fast.heatmap_to_box(heatmaps, rel_threshold, conf_threshold, bool(tozero))


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.heatmap_to_box.default)
