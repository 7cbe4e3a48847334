"""RoIAlign: a drop-in for ``torchvision.ops.roi_align`` / ``RoIAlign`` (same signature, same
numbers, and the same behaviour around the numbers that torchvision code relies on).

ReIR pools 7x7 features of its proposals from the stride-16 C4 map (aligned=True,
sampling_ratio=2, spatial_scale=1/16) twice per step; this is the op that does it.

Backends: ``cpu`` (C++, parallel, deterministic backward without atomics, channels_last input
served in place), ``cuda``, ``triton``, ``reference``. Autograd flows to ``input`` (not to the boxes,
as in torchvision).

What torchvision callers rely on, and how it is kept:

* layout: the output is contiguous NCHW, and so is the gradient of a channels_last input, as in
  torchvision (code that calls ``.view`` on them keeps working); the kernels read a channels_last
  input in place either way. ``keep_channels_last=True`` keeps a channels_last input's output and
  input gradient channels_last instead, the fastest path (timings in docs/compatibility.md).
* ``torch.jit.script`` of :func:`roi_align` and of :class:`RoIAlign`: scripted code runs the
  compiled kernel (``backend`` "auto", "cpu" or "cuda").
* ``torch.fx``: :func:`roi_align` is a leaf (``torch.fx.wrap``), so ``symbolic_trace`` and
  torchvision's feature extraction see one node per call.
* autocast: under ``torch.autocast`` input and boxes that are not float64 are cast to float32,
  pooled, and the result cast back to the input's dtype (torchvision's autocast rule), so mixed
  input/box dtypes are accepted there.
* bad box shapes raise :class:`~dapo_fast.ops._checks.ShapeError`, a ValueError that is also the
  AssertionError torchvision raises.
"""
from typing import List, Union

import torch
from torch import Tensor, nn
from torch.jit.annotations import BroadcastingList2

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import roi_align as _meta
from dapo_fast.ops._reference import roi_align as _reference

__all__ = ["roi_align", "RoIAlign", "boxes_to_rois"]

# what torchvision accepts; a tuple of tensors works as well as a list at run time
BoxesType = Union[Tensor, List[Tensor]]


def boxes_to_rois(boxes: List[Tensor], like: Tensor) -> Tensor:
    """Tensor[K, 5] (batch_index, x1, y1, x2, y2) from a list of Tensor[L_i, 4] (image i's boxes);
    ``like`` gives dtype and device when the list is empty. TorchScript-compatible."""
    if len(boxes) == 0:
        return torch.empty((0, 5), dtype=like.dtype, device=like.device)
    index = [torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(index), torch.cat(boxes)], dim=1)


def _checked_rois(boxes, input: Tensor) -> Tensor:
    if isinstance(boxes, Tensor):
        _checks.tensor(boxes, "boxes", dtypes=None)
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise _checks.ShapeError(f"boxes must be Tensor[K, 5] or a list of Tensor[L, 4], got shape "
                                     f"{tuple(boxes.shape)}")
        return boxes
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    if len(boxes) == 0:  # torchvision refuses it too (torch.cat of nothing)
        raise ValueError("boxes must be a Tensor[K, 5] or a non-empty list of Tensor[L, 4] (one per image), got []")
    for i, b in enumerate(boxes):
        _checks.tensor(b, f"boxes[{i}]", dtypes=None)
        if b.dim() != 2 or b.shape[1] != 4:
            raise _checks.ShapeError(f"boxes[{i}] must have shape [L, 4], got {tuple(b.shape)}")
    return boxes_to_rois(list(boxes), input)


def _autocast_dtype(t: Tensor) -> torch.dtype:
    """torchvision's autocast cast of roi_align: floating tensors other than float64 -> float32."""
    return torch.float32 if t.is_floating_point() and t.dtype != torch.float64 else t.dtype


@torch.jit.unused
def _roi_align(input: Tensor, boxes: BoxesType, output_size, spatial_scale: float, sampling_ratio: int,
               aligned: bool, backend: str, keep_channels_last: bool) -> Tensor:
    _checks.tensor(input, "input", dim=4)
    rois = _checked_rois(boxes, input)
    _checks.tensor(rois, "boxes", dtypes=None, device=input.device)
    pooled_h, pooled_w = _checks.positive_pair(output_size, "output_size")
    sampling_ratio = _checks.integer(sampling_ratio, "sampling_ratio", high=_reference.MAX_SAMPLING_RATIO)
    spatial_scale = _checks.real(spatial_scale, "spatial_scale")
    aligned = _checks.flag(aligned, "aligned")
    keep_channels_last = _checks.flag(keep_channels_last, "keep_channels_last")
    if torch.is_autocast_enabled(input.device.type):
        with torch.autocast(input.device.type, enabled=False):
            out = _roi_align(input.to(_autocast_dtype(input)), rois.to(_autocast_dtype(rois)), output_size,
                             spatial_scale, sampling_ratio, aligned, backend, keep_channels_last)
        return out.to(input.dtype)
    _checks.same_dtype(input, "input", rois, "boxes")
    _checks.allocatable((rois.shape[0], input.shape[1], pooled_h, pooled_w), input.dtype, input.device,
                        "boxes, input and output_size")

    chosen = _backend.resolve(backend, input.device)
    if chosen == "reference":
        out = _reference.roi_align(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned)
        kept = keep_channels_last and _checks.is_channels_last(input)
        return out.contiguous(memory_format=torch.channels_last) if kept else out
    if chosen == "triton":
        from dapo_fast.ops._triton import roi_align as _triton

        return _triton.roi_align_triton(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned,
                                        keep_channels_last)
    return torch.ops.dapo_fast.roi_align(input, rois, spatial_scale, pooled_h, pooled_w, sampling_ratio, aligned,
                                         keep_channels_last)


@torch.fx.wrap
def roi_align(input: Tensor, boxes: BoxesType, output_size: BroadcastingList2[int], spatial_scale: float = 1.0,
              sampling_ratio: int = -1, aligned: bool = False, backend: str = "auto",
              keep_channels_last: bool = False) -> Tensor:
    """Average of bilinear samples in each of ``output_size`` bins of every box.

    Args:
        input: Tensor[N, C, H, W], float16/bfloat16/float32/float64 (fp32 accumulation for the
            reduced types). Any layout.
        boxes: Tensor[K, 5] rows (batch_index, x1, y1, x2, y2), or a list of N Tensor[L_i, 4];
            same dtype as ``input`` (under autocast: see the module docstring).
        output_size: int or (height, width) of the pooled output, > 0.
        spatial_scale: maps box coordinates to input coordinates (1/16 for a stride-16 map); finite.
        sampling_ratio: samples per bin along each axis; <= 0 means ceil(bin size) (adaptive).
            At most 46340: the sampling_ratio**2 samples of a bin are counted in a 32-bit int
            (adaptive grids stop there too: bins over 46340 feature pixels differ from torchvision,
            which overflows).
        aligned: shift boxes by -0.5 pixel (Detectron2's ROIAlignV2) for exact alignment.
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".
        keep_channels_last: for a channels_last input, return a channels_last output and give the
            input a channels_last gradient (no layout copy; not torchvision's layout).

    Returns:
        Tensor[K, C, output_h, output_w] of ``input.dtype``, contiguous unless keep_channels_last.

    NaN and Inf: a NaN or Inf pixel reaches every bin with a sample that reads it (with a zero
    bilinear weight too, as in torchvision); samples outside the map read nothing (as in
    torchvision's CUDA kernel; its CPU kernel reads pixel (0, 0) with weight 0 for them, so a NaN
    there reaches every bin with such a sample). A box with a NaN coordinate, or of infinite size,
    pools 0 (torchvision's result there is undefined).
    """
    if not torch.jit.is_scripting():
        return _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, backend,
                          keep_channels_last)
    # TorchScript: torchvision's checks, then the compiled kernel
    if isinstance(boxes, Tensor):
        torch._assert(boxes.dim() == 2 and boxes.size(1) == 5, "boxes must be Tensor[K, 5]")
        rois = boxes
    else:
        for b in boxes:
            torch._assert(b.dim() == 2 and b.size(1) == 4, "boxes must be a list of Tensor[L, 4]")
        rois = boxes_to_rois(boxes, input)
    torch._assert(backend in ("auto", "cpu", "cuda"), "TorchScript runs the compiled kernel: backend must be "
                                                      "'auto', 'cpu' or 'cuda'")
    return torch.ops.dapo_fast.roi_align(input, rois, spatial_scale, output_size[0], output_size[1], sampling_ratio,
                                         aligned, keep_channels_last)


class RoIAlign(nn.Module):
    """Module form of :func:`roi_align` (torchvision.ops.RoIAlign's constructor, plus ``backend``
    and ``keep_channels_last``)."""

    def __init__(self, output_size: BroadcastingList2[int], spatial_scale: float, sampling_ratio: int,
                 aligned: bool = False, backend: str = "auto", keep_channels_last: bool = False):
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.backend = backend
        self.keep_channels_last = keep_channels_last

    def forward(self, input: Tensor, rois: BoxesType) -> Tensor:
        return roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned,
                         self.backend, self.keep_channels_last)

    def extra_repr(self) -> str:
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.roi_align.default, torch.ops.dapo_fast.roi_align_backward.default)
