"""A seeded synthetic multi-object grounding benchmark that needs no download.

Each sample is an RGB image (default 128x128) with 1 to 8 coloured shapes on a textured
background (later shapes partially occlude earlier ones), a caption that mentions 1 to 3 of the
objects by attribute and category ("a red circle left of a blue square"), the entities with their
caption spans, and - for evaluation only - every entity's ground-truth boxes and mask. Class-agnostic
region proposals (jittered object boxes plus distractors) and mask proposals are included for the
proposal-based methods.

Splits are fixed by the seed: ``train``, ``val`` and ``test`` draw from disjoint random streams,
and ``multi`` is the subset of ``test`` with 6 or more objects (the analogue of DAPO's Flickr-M).

Every sample is a plain dict (see :mod:`dapo_fast.data.sample`); the whole split is also held as
stacked tensors (:class:`SyntheticSplit`) so training reads it without per-sample decoding.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Dict, List, Optional

import numpy as np
import torch

from dapo_fast.safe_io import FileFormatError, atomic_write, remove_stale_temp_files, torch_load_safely

SHAPES = ("circle", "square", "triangle", "diamond", "cross", "ring")
COLOURS = {
    "red": (215, 40, 40),
    "green": (40, 165, 55),
    "blue": (45, 75, 225),
    "yellow": (235, 215, 35),
    "purple": (145, 55, 190),
    "orange": (245, 135, 25),
}
SIZES = ("small", "large")
RELATIONS = ("left of", "right of", "above", "below", "and", "near")
SPLIT_OFFSETS = {"train": 0, "val": 1_000_003, "test": 2_000_029}
MULTI_OBJECT_MIN = 6  # the multi-object test subset: images with at least this many objects


@dataclasses.dataclass
class SyntheticConfig:
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 8
    max_entities: int = 3
    min_radius: float = 0.07  # object half-size as a fraction of the image side
    max_radius: float = 0.14
    min_visible: float = 0.55  # occluded objects keep at least this fraction of their area
    num_proposals: int = 24
    num_mask_proposals: int = 16
    mask_proposal_size: int = 32


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (ax <= r * 0.85) & (ay <= r * 0.85)
    if shape == "triangle":  # upward triangle: apex at -r, base at +0.8r
        return (dy <= 0.8 * r) & (dy >= -r) & (ax <= (dy + r) * 0.6)
    if shape == "diamond":
        return ax + ay <= r
    if shape == "cross":
        arm = 0.33 * r
        return ((ax <= arm) & (ay <= r)) | ((ay <= arm) & (ax <= r))
    if shape == "ring":
        d2 = dx * dx + dy * dy
        return (d2 <= r * r) & (d2 >= (0.55 * r) ** 2)
    raise ValueError(f"unknown shape {shape!r}")


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-saturation texture: grey level + oriented stripes + blotches + pixel noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(70, 180)
    tint = rng.uniform(-12, 12, size=3)
    theta = rng.uniform(0, np.pi)
    freq = rng.uniform(4, 14)
    stripes = np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)) + rng.uniform(0, 6.3))
    blot = np.zeros_like(xx)
    for _ in range(3):
        cx, cy, s = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.3)
        blot += rng.uniform(-25, 25) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    grey = base + rng.uniform(8, 22) * stripes + blot
    img = grey[None] + tint[:, None, None] + rng.normal(0, 7, size=(3, size, size))
    return img


def _box_of(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float32)


def _relation(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> str:
    """A relation word that is true for the object centres a=(x,y), b=(x,y)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if rng.random() < 0.25:
        return "and"
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def generate_sample(rng: np.random.Generator, cfg: SyntheticConfig, num_objects: Optional[int] = None) -> Dict:
    """One sample dict (numpy arrays); see module docstring for the fields."""
    s = cfg.image_size
    if num_objects is None:
        num_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    img = _background(rng, s)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    objects: List[Dict] = []
    occupied = np.zeros((s, s), dtype=bool)
    full_masks: List[np.ndarray] = []
    attempts = 0
    while len(objects) < num_objects and attempts < 200:
        attempts += 1
        big = rng.random() < 0.5
        lo, hi = cfg.min_radius, cfg.max_radius
        mid = (lo + hi) / 2
        r = rng.uniform(mid, hi) if big else rng.uniform(lo, mid)
        r *= s
        cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
        shape = SHAPES[rng.integers(len(SHAPES))]
        mask = _shape_mask(shape, xx - cx, yy - cy, r)
        area = mask.sum()
        if area < 20:
            continue
        # the new shape is painted on top: every earlier object must stay mostly visible,
        # and the new one may cover at most a little of what is already there
        if (mask & occupied).sum() > 0.35 * area:
            continue
        ok = True
        for o, fm in zip(objects, full_masks):
            if (o["visible"] & ~mask).sum() < cfg.min_visible * fm.sum():
                ok = False
                break
        if not ok:
            continue
        for o in objects:
            o["visible"] = o["visible"] & ~mask
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        objects.append(dict(shape=shape, colour=colour, size="large" if big else "small",
                            centre=np.array([cx, cy]), visible=mask.copy()))
        full_masks.append(mask)
        occupied |= mask
        rgb = np.array(COLOURS[colour], dtype=np.float32) + rng.normal(0, 10, size=3)
        shade = 1.0 + 0.12 * ((xx - cx) / r) * rng.uniform(-1, 1)  # a little lighting gradient
        for c in range(3):
            img[c][mask] = (rgb[c] * shade[mask]) + rng.normal(0, 6, size=int(area))
    image = np.clip(img, 0, 255).astype(np.uint8)

    # mention 1..max_entities distinct (colour, shape) kinds; an entity's boxes are all objects of that kind
    kinds: Dict[tuple, List[int]] = {}
    for i, o in enumerate(objects):
        kinds.setdefault((o["colour"], o["shape"]), []).append(i)
    kind_list = list(kinds)
    n_ent = int(rng.integers(1, min(cfg.max_entities, len(kind_list)) + 1))
    chosen = [kind_list[i] for i in rng.permutation(len(kind_list))[:n_ent]]
    caption, spans, phrases, boxes, masks = "", [], [], [], []
    for e, kind in enumerate(chosen):
        members = kinds[kind]
        phrase = f"{kind[0]} {kind[1]}"
        if e == 0:
            caption = "a "
        else:
            rel = _relation(objects[kinds[chosen[e - 1]][0]]["centre"], objects[members[0]]["centre"], rng)
            caption += f" {rel} a "
        start = len(caption)
        caption += phrase
        spans.append((start, len(caption)))
        phrases.append(phrase)
        union = np.zeros((s, s), dtype=bool)
        for m in members:
            union |= objects[m]["visible"]
        boxes.append(np.stack([_box_of(objects[m]["visible"]) for m in members]))
        masks.append(union)

    proposals, mask_props = _proposals(rng, objects, cfg)
    return dict(image=image, caption=caption, phrases=phrases, spans=spans, gt_boxes=boxes,
                gt_masks=np.stack(masks), num_objects=len(objects), proposals=proposals,
                mask_proposals=mask_props)


def _proposals(rng: np.random.Generator, objects: List[Dict], cfg: SyntheticConfig):
    """Class-agnostic box proposals (jittered object boxes + random distractors) and low-res mask proposals."""
    s = cfg.image_size
    boxes = []
    for o in objects:
        b = _box_of(o["visible"])
        for _ in range(2):
            w, h = b[2] - b[0], b[3] - b[1]
            jitter = rng.normal(0, 0.1, size=4) * np.array([w, h, w, h])
            boxes.append(b + jitter)
    while len(boxes) < cfg.num_proposals:
        x0, y0 = rng.uniform(0, s * 0.8, size=2)
        w, h = rng.uniform(s * 0.08, s * 0.4, size=2)
        boxes.append(np.array([x0, y0, x0 + w, y0 + h]))
    boxes = np.clip(np.stack(boxes[: cfg.num_proposals]), 0, s).astype(np.float32)
    boxes = boxes[rng.permutation(len(boxes))]
    m = cfg.mask_proposal_size
    step = s // m
    props = []
    for o in objects[: cfg.num_mask_proposals]:
        props.append(o["visible"][step // 2::step, step // 2::step][:m, :m])
    yy, xx = np.mgrid[0:m, 0:m]
    while len(props) < cfg.num_mask_proposals:  # distractor blobs
        cx, cy, r = rng.uniform(0, m), rng.uniform(0, m), rng.uniform(2, m / 4)
        props.append((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)
    props = np.stack(props[: cfg.num_mask_proposals])
    return boxes, props[rng.permutation(len(props))]


class SyntheticSplit(torch.utils.data.Dataset):
    """One split held in memory. ``__getitem__`` returns the common sample dict
    (:func:`dapo_fast.data.sample.make_sample`) with torch tensors."""

    def __init__(self, records: List[Dict], name: str, cfg: SyntheticConfig):
        self.name = name
        self.cfg = cfg
        self.images = torch.from_numpy(np.stack([r["image"] for r in records]))  # [N,3,S,S] uint8
        self.captions = [r["caption"] for r in records]
        self.phrases = [r["phrases"] for r in records]
        self.spans = [r["spans"] for r in records]
        self.gt_boxes = [[torch.from_numpy(b) for b in r["gt_boxes"]] for r in records]
        self.gt_masks = [torch.from_numpy(r["gt_masks"]) for r in records]
        self.num_objects = torch.tensor([r["num_objects"] for r in records], dtype=torch.long)
        self.proposals = torch.from_numpy(np.stack([r["proposals"] for r in records]))
        self.mask_proposals = torch.from_numpy(np.stack([r["mask_proposals"] for r in records]))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Dict:
        from dapo_fast.data.sample import make_sample

        return make_sample(
            image=self.images[i], caption=self.captions[i], phrases=self.phrases[i], spans=self.spans[i],
            gt_boxes=self.gt_boxes[i], gt_masks=self.gt_masks[i], num_objects=int(self.num_objects[i]),
            image_id=f"{self.name}/{i}", proposals=self.proposals[i], mask_proposals=self.mask_proposals[i])

    def subset(self, indices) -> "SyntheticSplit":
        indices = [int(i) for i in indices]
        out = SyntheticSplit.__new__(SyntheticSplit)
        out.name, out.cfg = self.name, self.cfg
        out.images = self.images[indices]
        out.captions = [self.captions[i] for i in indices]
        out.phrases = [self.phrases[i] for i in indices]
        out.spans = [self.spans[i] for i in indices]
        out.gt_boxes = [self.gt_boxes[i] for i in indices]
        out.gt_masks = [self.gt_masks[i] for i in indices]
        out.num_objects = self.num_objects[indices]
        out.proposals = self.proposals[indices]
        out.mask_proposals = self.mask_proposals[indices]
        return out


def generate_split(name: str, n: int, seed: int = 0, cfg: Optional[SyntheticConfig] = None) -> SyntheticSplit:
    """``n`` samples of split ``name`` ("train", "val", "test"); same (name, n, seed, cfg) -> same data.
    Object counts cycle through min..max so every count subset has the same size."""
    if name not in SPLIT_OFFSETS:
        raise ValueError(f"split must be one of {sorted(SPLIT_OFFSETS)}, got {name!r}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(seed * 7_919 + SPLIT_OFFSETS[name])
    counts = np.arange(n) % (cfg.max_objects - cfg.min_objects + 1) + cfg.min_objects
    counts = counts[rng.permutation(n)]
    records = [generate_sample(rng, cfg, int(k)) for k in counts]
    return SyntheticSplit(records, name, cfg)


def multi_object_subset(split: SyntheticSplit, min_objects: int = MULTI_OBJECT_MIN) -> SyntheticSplit:
    """The test images with ``min_objects`` or more objects (DAPO's Flickr-M analogue)."""
    idx = torch.nonzero(split.num_objects >= min_objects).flatten().tolist()
    out = split.subset(idx)
    out.name = split.name + "-multi"
    return out


def generate_benchmark(root: str, num_train: int = 8000, num_val: int = 400, num_test: int = 1000,
                       seed: int = 0, cfg: Optional[SyntheticConfig] = None) -> Dict[str, str]:
    """Write train/val/test splits to ``root/<split>.pt`` (reused when present with the same spec)."""
    cfg = cfg or SyntheticConfig()
    os.makedirs(root, exist_ok=True)
    paths = {}
    for name, n in (("train", num_train), ("val", num_val), ("test", num_test)):
        path = os.path.join(root, f"{name}.pt")
        spec = dict(n=n, seed=seed, cfg=dataclasses.asdict(cfg), version=1)
        remove_stale_temp_files(path)
        if os.path.exists(path):
            try:
                if torch_load_safely(path, "synthetic split file", mmap=True)["spec"] == spec:
                    paths[name] = path
                    continue
            except Exception:
                pass  # unreadable, refused or different: regenerate
        split = generate_split(name, n, seed, cfg)
        # tensors and plain containers only (the config as a dict), so the file loads with weights_only
        state = dict(spec=spec, split=dict(split.__dict__, cfg=dataclasses.asdict(split.cfg)))
        atomic_write(path, lambda f: torch.save(state, f))
        paths[name] = path
    return paths


def load_split(root: str, name: str) -> SyntheticSplit:
    """Load ``root/<name>.pt`` written by :func:`generate_benchmark`."""
    path = os.path.join(root, f"{name}.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"synthetic split file missing: {path} (run `dapo-fast demo` or generate_benchmark)")
    state = torch_load_safely(path, "synthetic split file")
    fields = state.get("split") if isinstance(state, dict) else None
    problem = _cached_split_problem(fields)
    if problem:
        raise FileFormatError(f"synthetic split file {path} is malformed ({problem}); delete it to regenerate")
    out = SyntheticSplit.__new__(SyntheticSplit)
    out.__dict__.update(fields, cfg=SyntheticConfig(**fields["cfg"]))
    return out


def _cached_split_problem(fields) -> str:
    """What is wrong with a cached split's fields ("" when nothing)."""
    if not isinstance(fields, dict):
        return "no 'split' dict"
    images = fields.get("images")
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4):
        return "'images' is not a uint8 [N, 3, H, W] tensor"
    n = images.shape[0]
    for key in ("captions", "phrases", "spans", "gt_boxes", "gt_masks"):
        if not (isinstance(fields.get(key), list) and len(fields[key]) == n):
            return f"'{key}' is not a list of {n}"
    for key in ("num_objects", "proposals", "mask_proposals"):
        if not (isinstance(fields.get(key), torch.Tensor) and fields[key].dim() >= 1 and fields[key].shape[0] == n):
            return f"'{key}' is not a tensor of {n} rows"
    cfg = fields.get("cfg")
    known = {f.name for f in dataclasses.fields(SyntheticConfig)}
    if not (isinstance(cfg, dict) and set(cfg) <= known):
        return "'cfg' is not a SyntheticConfig dict"
    return ""
