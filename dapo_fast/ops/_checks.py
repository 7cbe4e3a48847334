"""Argument checks of the Python fronts, and the argument conversions several fronts share.
Every message names the argument.

They only look at metadata (shape, dtype, device), never at values, so they cost nothing and
trace under torch.compile without a graph break.
"""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from dapo_fast.ops._reference.soft_iou import VARIANTS

FLOATING = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


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


def same_dtype(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.dtype != b.dtype:
        raise TypeError(f"{a_name} and {b_name} must have the same dtype, got {a.dtype} and {b.dtype}")


def positive_pair(value, name: str) -> tuple:
    """An int or a pair of ints, each > 0, returned as a pair."""
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if pair[0] <= 0 or pair[1] <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair


def is_channels_last(t: torch.Tensor) -> bool:
    """Same rule as csrc/common/checks.h: NHWC in memory and not also plainly contiguous."""
    return t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


# ---- box deltas (box_coder, self_taught_targets) -------------------------------------------------

def box_weights(weights: Sequence[float]) -> list:
    """The four delta weights (wx, wy, ww, wh) as floats, each > 0."""
    w = [float(v) for v in weights]
    if len(w) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights!r}")
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
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    return variant
