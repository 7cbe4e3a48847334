"""RoIAlign: a drop-in for ``torchvision.ops.roi_align`` (same signature, same numbers).

ReIR pools 7x7 features of its proposals from the stride-16 C4 map (aligned=True,
sampling_ratio=2, spatial_scale=1/16) twice per step; this is the op that does it.

Backends: ``cpu`` (C++, parallel, deterministic backward without atomics, channels_last input
served in place), ``cuda``, ``triton``, ``reference``. Autograd flows to ``input`` (not to the boxes,
as in torchvision). The output is channels_last when the input is.
"""
from typing import List, Sequence, Union

import torch
from torch import Tensor, nn

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import roi_align as _meta
from dapo_fast.ops._reference import roi_align as _reference

__all__ = ["roi_align", "RoIAlign", "boxes_to_rois"]

BoxesType = Union[Tensor, List[Tensor], Sequence[Tensor]]


def boxes_to_rois(boxes: BoxesType, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Tensor[K, 5] (batch_index, x1, y1, x2, y2) from either that or a list of Tensor[L_i, 4]."""
    if isinstance(boxes, Tensor):
        _checks.tensor(boxes, "boxes", dtypes=None)
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(f"boxes must be Tensor[K, 5] or a list of Tensor[L, 4], got shape {tuple(boxes.shape)}")
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    for i, b in enumerate(boxes):
        _checks.tensor(b, f"boxes[{i}]", dtypes=None)
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"boxes[{i}] must have shape [L, 4], got {tuple(b.shape)}")
    if len(boxes) == 0:
        return torch.empty((0, 5), dtype=dtype, device=device)
    index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
    return torch.cat([index, torch.cat(list(boxes))], dim=1)


def roi_align(input: Tensor, boxes: BoxesType, output_size, spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False, *, backend: str = "auto") -> Tensor:
    """Average of bilinear samples in each of ``output_size`` bins of every box.

    Args:
        input: Tensor[N, C, H, W], float16/bfloat16/float32/float64 (fp32 accumulation for the
            reduced types). Any layout; channels_last is read in place.
        boxes: Tensor[K, 5] rows (batch_index, x1, y1, x2, y2), or a list of N Tensor[L_i, 4].
        output_size: int or (height, width) of the pooled output, > 0.
        spatial_scale: maps box coordinates to input coordinates (1/16 for a stride-16 map).
        sampling_ratio: samples per bin along each axis; <= 0 means ceil(bin size) (adaptive).
        aligned: shift boxes by -0.5 pixel (Detectron2's ROIAlignV2) for exact alignment.
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        Tensor[K, C, output_h, output_w] of ``input.dtype``.
    """
    _checks.tensor(input, "input", dim=4)
    rois = boxes_to_rois(boxes, input.dtype, input.device)
    _checks.same_dtype(input, "input", rois, "boxes")
    _checks.tensor(rois, "boxes", device=input.device)
    pooled_h, pooled_w = _checks.positive_pair(output_size, "output_size")
    if not isinstance(sampling_ratio, int):
        raise TypeError(f"sampling_ratio must be an int, got {sampling_ratio!r}")
    spatial_scale = float(spatial_scale)
    aligned = bool(aligned)

    chosen = _backend.resolve(backend, input.device)
    if chosen == "reference":
        return _reference.roi_align(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
    if chosen == "triton":
        from dapo_fast.ops._triton import roi_align as _triton

        return _triton.roi_align_triton(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
    return torch.ops.dapo_fast.roi_align(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` (torchvision.ops.RoIAlign's constructor)."""

    def __init__(self, output_size, spatial_scale: float, sampling_ratio: int, aligned: bool = False,
                 backend: str = "auto"):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.backend = backend

    def forward(self, input: Tensor, rois: BoxesType) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned,
                         backend=self.backend)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.roi_align.default, torch.ops.dapo_fast.roi_align_backward.default)
