"""Argument checks of the Python fronts, and the argument conversions several fronts share.
Every message names the argument.

Tensor checks only look at metadata (shape, dtype, device), never at values, so they cost nothing
and trace under torch.compile without a graph break. Scalar checks refuse what the kernels would
misread: a wrong type (``2.5`` for an int, ``"no"`` for a bool, a tensor for a float: TypeError),
NaN, and integers outside the kernels' 32-bit int (ValueError).
"""
import math
import numbers
import os
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from dapo_fast.ops._reference.soft_iou import VARIANTS

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INT32_MIN, INT32_MAX = -2**31, 2**31 - 1
INT64_MAX = 2**63 - 1


def _what(value) -> str:
    """A short description of a refused value for an error message."""
    if isinstance(value, Tensor):
        return f"a Tensor of shape {tuple(value.shape)}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


# ---- scalar arguments ------------------------------------------------------------------------------

def integer(value, name: str, *, low: int = INT32_MIN, high: int = INT32_MAX) -> int:
    """An int argument (Python or numpy int; not a bool, float or tensor) in [low, high]; the
    default range is what the kernels' 32-bit int holds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_what(value)}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def real(value, name: str, *, allow_inf: bool = False) -> float:
    """A number argument (int or float; not a bool, complex or tensor) as a float: never NaN,
    finite unless ``allow_inf``. Range checks are the caller's."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a float, got {_what(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} must be a finite number, got {value}") from None
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{name} must be a {'number' if allow_inf else 'finite number'}, got {value}")
    return value


def flag(value, name: str) -> bool:
    """A bool argument (Python or numpy bool only: ``"no"`` or ``2`` are refused, not read as True)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_what(value)}")
    return bool(value)


def choice(value, name: str, options: Sequence[str]) -> str:
    """One of the string ``options``."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {tuple(options)}, got {_what(value)}")
    return value


def positive_pair(value, name: str) -> tuple:
    """An int or a pair of ints, each > 0 and within the kernels' 32-bit int, returned as a pair."""
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise TypeError(f"{name} must be an int or a pair of ints, got {_what(value)}")
        pair = tuple(integer(v, f"{name}[{i}]", low=1) for i, v in enumerate(value))
    else:
        pair = (integer(value, name, low=1),) * 2
    return pair


# ---- sizes -------------------------------------------------------------------------------------------

def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0  # unknown


_MACHINE_MEMORY = _machine_memory()


def _memory_bytes(device: torch.device) -> int:
    """The memory of ``device``: the GPU's, or the machine's for the CPU (0 when unknown)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return _MACHINE_MEMORY if device.type == "cpu" else 0


def allocatable(shape: Sequence[int], dtype: torch.dtype, device: torch.device, what: str) -> None:
    """Refuse, before anything is allocated, an output of ``shape`` whose element count overflows
    int64 or whose bytes exceed the device's memory; ``what`` names the arguments that set it.
    (Under torch.compile, where shapes may be symbolic, it is left to the allocator.)"""
    if torch.compiler.is_compiling() or not all(isinstance(s, int) for s in shape):
        return
    numel = math.prod(shape)
    if numel > INT64_MAX:
        raise ValueError(f"{what} give an output of shape {tuple(shape)}: {numel} elements overflow int64")
    need = numel * torch.empty((), dtype=dtype, device="meta").element_size()
    have = _memory_bytes(device)
    if have and need > have:
        raise ValueError(f"{what} give an output of shape {tuple(shape)} ({need / 2**30:.3g} GiB), more than the "
                         f"{have / 2**30:.3g} GiB of memory of {device}")


class ShapeError(ValueError, AssertionError):
    """A bad shape where the peer op (torchvision) asserts: code written against the peer catches
    AssertionError, code written against us catches ValueError; both work."""


def tensor(t, name: str, *, dim: Optional[int] = None, dtypes: Optional[Sequence[torch.dtype]] = FLOATING,
           device: Optional[torch.device] = None, shape: Optional[Sequence[Optional[int]]] = None) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if dim is not None and t.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions, got shape {tuple(t.shape)}")
    if shape is not None:
        if t.dim() != len(shape) or any(s is not None and t.shape[i] != s for i, s in enumerate(shape)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise TypeError(f"{name} must have dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device} (like the other inputs), got {t.device}")


def memory_span(t: Tensor):
    """(storage address, first byte, one past the last byte) of the memory ``t``'s elements span."""
    extent = 1 + sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return t.untyped_storage().data_ptr(), t.data_ptr(), t.data_ptr() + extent * t.element_size()


def expanded(t: Tensor) -> bool:
    """Whether several elements of ``t`` are one memory location (a dimension of stride 0)."""
    return any(size > 1 and stride == 0 for size, stride in zip(t.shape, t.stride()))


def share_memory(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` may share memory: the byte ranges they span in one storage intersect
    (stricter than torch's test, which lets interleaved views through)."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device or a.device.type == "meta":
        return False
    storage_a, first_a, end_a = memory_span(a)
    storage_b, first_b, end_b = memory_span(b)
    return storage_a == storage_b and first_a < end_b and first_b < end_a


def writable(out: Tensor, name: str, inputs: dict) -> None:
    """Refuse, as torch refuses for its in-place ops, an ``out`` that some of its own elements share
    memory in (an expanded tensor) or that shares memory with one of ``inputs`` (name -> tensor or
    None), which the kernel reads while it writes ``out``. Not checked under torch.compile (fake
    tensors have no memory)."""
    if torch.compiler.is_compiling():
        return
    if expanded(out):
        raise ValueError(f"{name} must not be an expanded tensor: several of its elements are one memory location "
                         f"(clone() it first)")
    for input_name, t in inputs.items():
        if t is not None and share_memory(out, t):
            raise ValueError(f"{name} must not share memory with {input_name}, which is read while {name} is written "
                             f"(clone() one of them)")


def same_dtype(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{a_name} and {b_name} must have the same dtype, got {a.dtype} and {b.dtype}")


def is_channels_last(t: torch.Tensor) -> bool:
    """Same rule as csrc/common/checks.h: NHWC in memory and not also plainly contiguous."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


# ---- box deltas (box_coder, self_taught_targets) -------------------------------------------------

def box_weights(weights: Sequence[float]) -> list:
    """The four delta weights (wx, wy, ww, wh) as floats, each finite and > 0."""
    if not isinstance(weights, (list, tuple)):
        raise TypeError(f"weights must be a sequence of 4 numbers (wx, wy, ww, wh), got {_what(weights)}")
    if len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {_what(weights)}")
    w = [real(v, f"weights[{i}]") for i, v in enumerate(weights)]
    if any(not v > 0 for v in w):
        raise ValueError(f"weights must be positive, got {weights!r}")
    return w


# ---- ground-truth boxes of N maps (pointing_game, box_accuracy) -------------------------------------

def gt_boxes_per_map(gt_boxes: Union[Tensor, Sequence[Tensor]], n: int, device: torch.device, name: str):
    """Checks a list of N Tensor[G_i, 4] or a Tensor[N, G, 4]; returns the boxes concatenated,
    [G, 4], and the map index of each, [G] int64."""
    if isinstance(gt_boxes, Tensor):
        tensor(gt_boxes, name, dtypes=None)
        if gt_boxes.dim() != 3 or gt_boxes.shape[0] != n or gt_boxes.shape[2] != 4:
            raise ValueError(f"{name} must be a list of N Tensor[G_i, 4] or a Tensor[N, G, 4] with N = {n}, "
                             f"got shape {tuple(gt_boxes.shape)}")
        owner = torch.arange(n, device=device).repeat_interleave(gt_boxes.shape[1])
        return gt_boxes.reshape(-1, 4).to(device), owner
    if not isinstance(gt_boxes, (list, tuple)):
        raise TypeError(f"{name} must be a list of Tensor[G_i, 4] or a Tensor[N, G, 4], got {type(gt_boxes).__name__}")
    if len(gt_boxes) != n:
        raise ValueError(f"{name} must have one entry per heatmap ({n}), got {len(gt_boxes)}")
    for i, b in enumerate(gt_boxes):
        tensor(b, f"{name}[{i}]", dtypes=None)
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f"{name}[{i}] must have shape [G, 4] (x1, y1, x2, y2), got {tuple(b.shape)}")
    if n == 0:
        return torch.empty((0, 4), device=device), torch.empty((0,), dtype=torch.int64, device=device)
    counts = torch.tensor([b.shape[0] for b in gt_boxes], device=device)
    owner = torch.arange(n, device=device).repeat_interleave(counts)
    boxes = torch.cat([b.to(device=device, dtype=torch.float64) for b in gt_boxes])
    return boxes, owner


def any_per_map(flags: Tensor, owner: Tensor, n: int) -> Tensor:
    """[n] bool: whether any of the flags of each map (``owner`` from gt_boxes_per_map) is set."""
    hits = torch.zeros(n, dtype=torch.int64, device=flags.device)
    return hits.index_add_(0, owner, flags.to(torch.int64)) > 0


# ---- per-entity maps (attention_guidance_loss, diffusion_guided_loss) ---------------------------

def entity_maps(heatmaps: Tensor, maps: Tensor, maps_name: str, entity_valid: Optional[Tensor]) -> Tensor:
    """Checks heatmaps and ``maps`` [B, E, H, W] and entity_valid [B, E] bool; returns entity_valid
    (all True when None)."""
    tensor(heatmaps, "heatmaps", dim=4)
    tensor(maps, maps_name, dim=4, device=heatmaps.device)
    same_dtype(heatmaps, "heatmaps", maps, maps_name)
    if maps.shape != heatmaps.shape:
        raise ValueError(f"heatmaps and {maps_name} must have the same shape [B, E, H, W], got "
                         f"{tuple(heatmaps.shape)} and {tuple(maps.shape)}")
    batch, entities = heatmaps.shape[0], heatmaps.shape[1]
    if entity_valid is None:
        return torch.ones((batch, entities), dtype=torch.bool, device=heatmaps.device)
    tensor(entity_valid, "entity_valid", shape=(batch, entities), dtypes=None, device=heatmaps.device)
    if entity_valid.dtype != torch.bool:
        raise TypeError(f"entity_valid must be a bool tensor, got {entity_valid.dtype}")
    return entity_valid


# ---- response maps and mask proposals (proposal_alignment, soft_iou, region_ambiguity) -------------

def response_and_masks(response: Tensor, masks: Tensor) -> Tensor:
    """Checks shapes; returns masks as bool/uint8 (kept) or in response's dtype (float masks)."""
    tensor(response, "response", dim=4)
    tensor(masks, "masks", dim=4, dtypes=None, device=response.device)
    if masks.shape[0] != response.shape[0] or masks.shape[2:] != response.shape[2:]:
        raise ValueError(f"masks must have shape [B, P, H, W] matching response [B, S, H, W] = "
                         f"{tuple(response.shape)}, got {tuple(masks.shape)}")
    if masks.dtype in (torch.bool, torch.uint8):
        return masks
    if not masks.is_floating_point():
        raise TypeError(f"masks must be bool, uint8 or floating point, got {masks.dtype}")
    return masks.to(response.dtype)


def mask_valid_tensor(mask_valid: Optional[Tensor], masks: Tensor) -> Tensor:
    """mask_valid [B, P] as bool (all True when None)."""
    if mask_valid is None:
        return torch.ones(masks.shape[:2], dtype=torch.bool, device=masks.device)
    tensor(mask_valid, "mask_valid", dtypes=None, device=masks.device)
    if tuple(mask_valid.shape) != tuple(masks.shape[:2]):
        raise ValueError(f"mask_valid must have shape [B, P] = {tuple(masks.shape[:2])}, got {tuple(mask_valid.shape)}")
    return mask_valid.to(torch.bool)


def soft_iou_variant(variant: str) -> str:
    return choice(variant, "variant", VARIANTS)


def soft_iou_eps(eps: float) -> float:
    """eps of the soft IoU denominators: finite and >= 0."""
    eps = real(eps, "eps")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return eps
