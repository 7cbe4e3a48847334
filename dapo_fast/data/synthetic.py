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
    max_cover: float = 0.35  # a new shape may lie on earlier ones with at most this fraction of its area
    num_proposals: int = 24
    num_mask_proposals: int = 40  # PCNet's P
    mask_proposal_size: int = 32
    # referring scenes (the hard preset): every entity is one object, named by the shortest phrase
    # that singles it out (colour + shape, size + colour + shape, or colour + shape + a relation to
    # another object), and every entity has a distractor that shares its colour or its shape
    referring: bool = False
    palette_colours: int = 0  # referring: colours one image draws from (0 = all); few -> many shared colours
    palette_shapes: int = 0  # referring: shapes one image draws from (0 = all)
    size_share: float = 0.0  # referring: planned share of entities with a same-looking twin of the other size
    relation_share: float = 0.0  # referring: planned share of entities with a same-looking twin of the same size
    relation_margin: float = 0.03  # referring: a relation holds (fails) when the centres differ by this
    clutter: int = 0  # coloured strokes and speckle patches painted on the background


PRESETS = {
    "default": SyntheticConfig(),
    # calibrated so that the demo's model without curriculum lands between 60% and 85% pointing game
    # (docs/training.md): smaller objects, more occlusion, up to 12 objects, background clutter
    "hard": SyntheticConfig(min_objects=2, max_objects=12, min_radius=0.065, max_radius=0.13, min_visible=0.5,
                            max_cover=0.4, num_proposals=32, referring=True, palette_colours=4, palette_shapes=3,
                            size_share=0.15, relation_share=0.15, clutter=4),
}


def preset_config(preset: str) -> SyntheticConfig:
    """A copy of the named preset's generator settings ("default" or "hard")."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return dataclasses.replace(PRESETS[preset])


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
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def _draw(shape: str, cx: float, cy: float, r: float, xx: np.ndarray, yy: np.ndarray):
    """(window, mask in the window) of a shape: the window holds every pixel whose centre lies within
    r of (cx, cy) along each axis, so the shape is all inside it and the work scales with its size."""
    s = xx.shape[0]
    win = (slice(max(0, int(cy - r) - 1), min(s, int(cy + r) + 2)), slice(max(0, int(cx - r) - 1), min(s, int(cx + r) + 2)))
    return win, _shape_mask(shape, xx[win] - cx, yy[win] - cy, r)


def _add_object(objects: List[Dict], occupied: np.ndarray, win, m: np.ndarray, **attrs) -> Dict:
    """Paint-order bookkeeping: the new shape hides what lies under it."""
    for o in objects:
        o["n_visible"] -= int((o["visible"][win] & m).sum())
        o["visible"][win] &= ~m
    visible = np.zeros_like(occupied)
    visible[win] = m
    occupied[win] |= m
    obj = dict(attrs, win=win, mask=m, visible=visible, area=int(m.sum()), n_visible=int(m.sum()))
    objects.append(obj)
    return obj


def _relation(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> str:
    """A relation word that is true for the object centres a=(x,y), b=(x,y)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    if rng.random() < 0.25:
        return "and"
    if abs(dx) >= abs(dy):
        return "left of" if dx > 0 else "right of"
    return "above" if dy > 0 else "below"


def _fits(win, m: np.ndarray, occupied: np.ndarray, objects: List[Dict], cfg: SyntheticConfig) -> bool:
    """Whether the shape ``m`` (in window ``win``), painted on top of ``objects``, keeps the scene
    legible: it lies on earlier shapes with at most ``max_cover`` of its area and every earlier
    object keeps ``min_visible`` of its own."""
    if (m & occupied[win]).sum() > cfg.max_cover * m.sum():
        return False
    return all(o["n_visible"] - (o["visible"][win] & m).sum() >= cfg.min_visible * o["area"] for o in objects)


def _paint(img: np.ndarray, rng: np.random.Generator, obj: Dict, xx: np.ndarray) -> None:
    """The shape in its colour (jittered per object), with a little lighting gradient and pixel noise."""
    # Python floats: against the float32 pixel grid they keep the arithmetic in float32
    win, m, cx, r = obj["win"], obj["mask"], float(obj["centre"][0]), float(obj["radius"])
    rgb = np.array(COLOURS[obj["colour"]], dtype=np.float32) + rng.normal(0, 10, size=3)
    shade = 1.0 + 0.12 * ((xx[win] - cx) / r) * rng.uniform(-1, 1)
    area = int(m.sum())
    for c in range(3):
        img[c][win][m] = (rgb[c] * shade[m]) + rng.normal(0, 6, size=area)


def _object_table(objects: List[Dict]) -> Dict[str, np.ndarray]:
    """Every object's attributes and geometry (evaluation and tests only): indices into COLOURS,
    SHAPES and SIZES, the shape's centre (x, y) and half-size in pixels, the box of its visible part."""
    return dict(colour=np.array([list(COLOURS).index(o["colour"]) for o in objects], dtype=np.int64),
                shape=np.array([SHAPES.index(o["shape"]) for o in objects], dtype=np.int64),
                size=np.array([SIZES.index(o["size"]) for o in objects], dtype=np.int64),
                centre=np.array([o["centre"] for o in objects], dtype=np.float32).reshape(-1, 2),
                radius=np.array([o["radius"] for o in objects], dtype=np.float32),
                box=np.array([o["box"] for o in objects], dtype=np.float32).reshape(-1, 4))


def generate_sample(rng: np.random.Generator, cfg: SyntheticConfig, num_objects: Optional[int] = None) -> Dict:
    """One sample dict (numpy arrays) plus ``objects`` (:func:`_object_table`); see the module docstring."""
    if num_objects is None:
        num_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    if cfg.referring:
        return _referring_sample(rng, cfg, num_objects)
    s = cfg.image_size
    img = _background(rng, s)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    objects: List[Dict] = []
    occupied = np.zeros((s, s), dtype=bool)
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
        win, m = _draw(shape, cx, cy, r, xx, yy)
        if m.sum() < 20:
            continue
        # the new shape is painted on top: every earlier object must stay mostly visible,
        # and the new one may cover at most a little of what is already there
        if not _fits(win, m, occupied, objects, cfg):
            continue
        colour = list(COLOURS)[rng.integers(len(COLOURS))]
        obj = _add_object(objects, occupied, win, m, shape=shape, colour=colour, size="large" if big else "small",
                          centre=np.array([cx, cy]), radius=r)
        _paint(img, rng, obj, xx)
    image = np.clip(img, 0, 255).astype(np.uint8)
    for o in objects:
        o["box"] = _box_of(o["visible"])

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
        boxes.append(np.stack([objects[m]["box"] for m in members]))
        masks.append(union)

    proposals, mask_props = _proposals(rng, objects, cfg)
    return dict(image=image, caption=caption, phrases=phrases, spans=spans, gt_boxes=boxes,
                gt_masks=np.stack(masks), num_objects=len(objects), proposals=proposals,
                mask_proposals=mask_props, objects=_object_table(objects))


# ---------------------------------------------------------------- referring scenes (the hard preset)

REFERRING_RELATIONS = ("left of", "right of", "above", "below")


def relation_offset(relation: str, centre: np.ndarray, anchor: np.ndarray) -> float:
    """How far (pixels) an object at ``centre`` is on the ``relation`` side of ``anchor`` (x right,
    y down): the relation holds when this is positive. "left of": anchor x - object x."""
    dx, dy = anchor[0] - centre[0], anchor[1] - centre[1]
    offsets = {"left of": dx, "right of": -dx, "above": dy, "below": -dy}
    if relation not in offsets:
        raise ValueError(f"relation must be one of {REFERRING_RELATIONS}, got {relation!r}")
    return float(offsets[relation])


def _size_radius(rng: np.random.Generator, cfg: SyntheticConfig, size: int) -> float:
    """Half-size (fraction of the side) of a small (0) or large (1) object: the two ranges are the
    lower and upper 35% of [min_radius, max_radius], so "small" and "large" differ at a glance."""
    span = 0.35 * (cfg.max_radius - cfg.min_radius)
    lo = cfg.min_radius if size == 0 else cfg.max_radius - span
    return rng.uniform(lo, lo + span)


def _plan_scene(rng: np.random.Generator, cfg: SyntheticConfig, num_objects: int):
    """Object attributes (colour, shape, size) in painting order and the entities' object indices.

    Each entity's object gets the distractor its kind of phrase needs: one object sharing its colour
    or its shape ("colour shape" phrases), a twin of the other size ("size colour shape"), or a twin
    of the same size plus an anchor of a kind seen once ("colour shape <relation> the colour shape").
    The entity and anchor kinds are kept out of the filler objects, which come from a small per-image
    palette of colours and shapes (more shared colours and shapes: more distractors)."""
    colours, shapes = list(COLOURS), list(SHAPES)
    pal_c = [colours[i] for i in rng.permutation(len(colours))[: cfg.palette_colours or len(colours)]]
    pal_s = [shapes[i] for i in rng.permutation(len(shapes))[: cfg.palette_shapes or len(shapes)]]
    attrs: List[tuple] = []
    reserved = set()  # kinds that only planned objects may have
    targets: List[int] = []

    def free_kind(colour=None, shape=None):
        """A (colour, shape) kind not yet in the scene (with this colour or shape when given), from
        the palette when possible."""
        used = {(c, s) for c, s, _ in attrs} | reserved
        for cs, ss in ((pal_c, pal_s), (colours, shapes)):
            options = [(c, s) for c in ([colour] if colour else cs) for s in ([shape] if shape else ss)
                       if (c, s) not in used]
            if options:
                return options[rng.integers(len(options))]
        return None

    max_ent = min(cfg.max_entities, max(1, num_objects // 2))
    for _ in range(int(rng.integers(1, max_ent + 1))):
        left = num_objects - len(attrs)
        u = rng.random()
        plan = "relation" if u < cfg.relation_share else "size" if u < cfg.relation_share + cfg.size_share else "attribute"
        if plan == "relation" and left < 3:
            plan = "size"
        if left < 2:
            break
        kind = free_kind()
        if kind is None:
            break
        size = int(rng.integers(2))
        reserved.add(kind)
        targets.append(len(attrs))
        attrs.append((kind[0], kind[1], size))
        if plan == "attribute":
            # a distractor sharing the colour or the shape (never the whole kind)
            share_colour = rng.random() < 0.5
            other = free_kind(colour=kind[0]) if share_colour else free_kind(shape=kind[1])
            other = other or free_kind(colour=None if share_colour else kind[0], shape=kind[1] if share_colour else None)
            if other is None:
                return None
            attrs.append((other[0], other[1], int(rng.integers(2))))
        elif plan == "size":
            attrs.append((kind[0], kind[1], 1 - size))
        else:
            attrs.append((kind[0], kind[1], size))
            anchor = free_kind()
            if anchor is None:
                return None
            reserved.add(anchor)
            attrs.append((anchor[0], anchor[1], int(rng.integers(2))))
    if not targets:
        return None
    fillers = [(c, s) for c in pal_c for s in pal_s if (c, s) not in reserved] or \
              [(c, s) for c in colours for s in shapes if (c, s) not in reserved]
    while len(attrs) < num_objects:
        c, s = fillers[rng.integers(len(fillers))]
        attrs.append((c, s, int(rng.integers(2))))
    order = rng.permutation(num_objects)  # painting order: any object may be the occluded one
    where = np.argsort(order)
    return [attrs[i] for i in order], [int(where[t]) for t in targets]


def _place(rng: np.random.Generator, cfg: SyntheticConfig, attrs: List[tuple], xx: np.ndarray,
           yy: np.ndarray) -> Optional[List[Dict]]:
    """Positions for the planned objects (painted in order, later ones on top), or None if one does not fit."""
    s = cfg.image_size
    objects: List[Dict] = []
    occupied = np.zeros((s, s), dtype=bool)
    for colour, shape, size in attrs:
        for _ in range(50):
            r = _size_radius(rng, cfg, size) * s
            cx, cy = rng.uniform(r, s - r), rng.uniform(r, s - r)
            win, m = _draw(shape, cx, cy, r, xx, yy)
            if m.sum() >= 20 and _fits(win, m, occupied, objects, cfg):
                break
        else:
            return None
        _add_object(objects, occupied, win, m, shape=shape, colour=colour, size=SIZES[size],
                    centre=np.array([cx, cy]), radius=r)
    for o in objects:
        o["box"] = _box_of(o["visible"])
    return objects


def describe_object(objects: List[Dict], target: int, margin: float, rng: np.random.Generator) -> Optional[str]:
    """The shortest phrase that names ``objects[target]`` and no other object: "colour shape" when its
    kind is unique, "size colour shape" when its size is, else "colour shape <relation> the colour
    shape" with an anchor whose kind is unique, where the target lies at least ``margin`` pixels on
    the relation's side of the anchor and every other object of its kind ``margin`` pixels on the
    other side. None when no such phrase exists or no other object shares its colour or shape."""
    t = objects[target]
    if not any(i != target and (o["colour"] == t["colour"] or o["shape"] == t["shape"]) for i, o in enumerate(objects)):
        return None
    kind = (t["colour"], t["shape"])
    twins = [i for i, o in enumerate(objects) if (o["colour"], o["shape"]) == kind]
    if len(twins) == 1:
        return f"{t['colour']} {t['shape']}"
    if sum(objects[i]["size"] == t["size"] for i in twins) == 1:
        return f"{t['size']} {t['colour']} {t['shape']}"
    kinds = [(o["colour"], o["shape"]) for o in objects]
    for a in rng.permutation(len(objects)):
        if kinds[a] == kind or kinds.count(kinds[a]) != 1:
            continue
        anchor = objects[a]["centre"]
        for k in rng.permutation(len(REFERRING_RELATIONS)):
            rel = REFERRING_RELATIONS[k]
            if relation_offset(rel, t["centre"], anchor) < margin:
                continue
            if all(relation_offset(rel, objects[i]["centre"], anchor) <= -margin for i in twins if i != target):
                return f"{t['colour']} {t['shape']} {rel} the {kinds[a][0]} {kinds[a][1]}"
    return None


def _clutter(rng: np.random.Generator, img: np.ndarray, count: int, xx: np.ndarray, yy: np.ndarray) -> None:
    """Strokes (thin line segments) and speckle patches in the objects' colours: colour alone does
    not find an object."""
    s = img.shape[-1]
    palette = list(COLOURS.values())
    for _ in range(count):
        rgb = np.array(palette[rng.integers(len(palette))], dtype=np.float32) + rng.normal(0, 10, size=3)
        x0, y0 = rng.uniform(0, s, size=2)
        if rng.random() < 0.5:  # stroke: points within half a width of a segment
            angle, length, width = rng.uniform(0, np.pi), rng.uniform(0.08, 0.25) * s, rng.uniform(1.0, 2.0)
            ux, uy = np.cos(angle), np.sin(angle)
            xs, ys = sorted((x0, x0 + length * ux)), sorted((y0, y0 + length * uy))
            win = (slice(max(0, int(ys[0] - width)), min(s, int(ys[1] + width) + 1)),
                   slice(max(0, int(xs[0] - width)), min(s, int(xs[1] + width) + 1)))
            px, py = xx[win] - x0, yy[win] - y0
            along = np.clip(px * ux + py * uy, 0, length)
            m = (px - along * ux) ** 2 + (py - along * uy) ** 2 <= (width / 2) ** 2
        else:  # speckle: a sparse patch of single pixels
            radius = rng.uniform(0.03, 0.07) * s
            win = (slice(max(0, int(y0 - radius)), min(s, int(y0 + radius) + 1)),
                   slice(max(0, int(x0 - radius)), min(s, int(x0 + radius) + 1)))
            m = ((xx[win] - x0) ** 2 + (yy[win] - y0) ** 2 <= radius ** 2) & (rng.random(xx[win].shape) < 0.3)
        img[(slice(None),) + win][:, m] = rgb[:, None] + rng.normal(0, 8, size=(3, int(m.sum())))


def _referring_sample(rng: np.random.Generator, cfg: SyntheticConfig, num_objects: int) -> Dict:
    s = cfg.image_size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    for _ in range(200):  # a plan whose geometry leaves some entity without a unique phrase is redrawn
        plan = _plan_scene(rng, cfg, num_objects)
        if plan is None:
            continue
        attrs, targets = plan
        objects = _place(rng, cfg, attrs, xx, yy)
        if objects is None:
            continue
        phrases = [describe_object(objects, t, cfg.relation_margin * s, rng) for t in targets]
        if all(p is not None for p in phrases):
            break
    else:
        raise RuntimeError(f"no referring scene with {num_objects} objects found: the preset's settings are too tight")
    img = _background(rng, s)
    _clutter(rng, img, cfg.clutter, xx, yy)
    for o in objects:
        _paint(img, rng, o, xx)
    image = np.clip(img, 0, 255).astype(np.uint8)
    caption, spans = "", []
    for e, phrase in enumerate(phrases):
        caption += ("the " if e == 0 else " and the " if e == len(phrases) - 1 else ", the ")
        spans.append((len(caption), len(caption) + len(phrase)))
        caption += phrase
    proposals, mask_props = _proposals(rng, objects, cfg)
    return dict(image=image, caption=caption, phrases=phrases, spans=spans,
                gt_boxes=[objects[t]["box"][None] for t in targets],
                gt_masks=np.stack([objects[t]["visible"] for t in targets]), num_objects=len(objects),
                proposals=proposals, mask_proposals=mask_props, objects=_object_table(objects))


def _proposals(rng: np.random.Generator, objects: List[Dict], cfg: SyntheticConfig):
    """Class-agnostic box proposals (jittered object boxes + random distractors) and low-res mask
    proposals (every object's visible mask + random blobs). The mask proposals draw from a child
    generator, so their number and shape never shift the draws of the images that follow."""
    s = cfg.image_size
    boxes = []
    for o in objects:
        b = o["box"]
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
    mask_rng = rng.spawn(1)[0]
    m = cfg.mask_proposal_size
    step = s // m
    props = []
    for o in objects[: cfg.num_mask_proposals]:
        props.append(o["visible"][step // 2::step, step // 2::step][:m, :m])
    yy, xx = np.mgrid[0:m, 0:m]
    while len(props) < cfg.num_mask_proposals:  # distractor blobs
        cx, cy, r = mask_rng.uniform(0, m), mask_rng.uniform(0, m), mask_rng.uniform(2, m / 4)
        props.append((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r)
    props = np.stack(props[: cfg.num_mask_proposals])
    return boxes, props[mask_rng.permutation(len(props))]


class SyntheticSplit(torch.utils.data.Dataset):
    """One split held in memory. ``__getitem__`` returns the common sample dict
    (:func:`dapo_fast.data.sample.make_sample`) with torch tensors; ``objects[i]`` holds image i's
    object table (:func:`_object_table`, as tensors) for evaluation and tests."""

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
        self.objects = [{k: torch.from_numpy(v) for k, v in r["objects"].items()} for r in records]

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
        state = self.state_dict()
        for key in _PER_SAMPLE_LISTS:
            state[key] = [state[key][i] for i in indices]
        for key in _PER_SAMPLE_TENSORS:
            state[key] = state[key][indices]
        return SyntheticSplit.from_state_dict(state)

    def state_dict(self) -> Dict:
        """Tensors and plain containers only (the cache is read with ``torch.load(weights_only=True)``)."""
        state = {k: getattr(self, k) for k in ("name",) + _PER_SAMPLE_LISTS + _PER_SAMPLE_TENSORS}
        state["spans"] = [[list(sp) for sp in spans] for spans in self.spans]
        state["cfg"] = dataclasses.asdict(self.cfg)
        return state

    @classmethod
    def from_state_dict(cls, state: Dict) -> "SyntheticSplit":
        out = cls.__new__(cls)
        out.__dict__.update(state)
        out.spans = [[tuple(sp) for sp in spans] for spans in state["spans"]]
        out.cfg = SyntheticConfig(**state["cfg"])
        return out


_PER_SAMPLE_LISTS = ("captions", "phrases", "spans", "gt_boxes", "gt_masks", "objects")
_PER_SAMPLE_TENSORS = ("images", "num_objects", "proposals", "mask_proposals")
CACHE_VERSION = 2  # bump when the generator's output changes: caches of another version are regenerated


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


def split_path(root: str, name: str, preset: str = "default") -> str:
    """Where a split of a preset is cached: ``root/<preset>/<name>.pt`` (presets never share a file)."""
    preset_config(preset)  # validates the name
    return os.path.join(root, preset, f"{name}.pt")


def generate_benchmark(root: str, num_train: int = 8000, num_val: int = 400, num_test: int = 1000,
                       seed: int = 0, preset: str = "default", cfg: Optional[SyntheticConfig] = None) -> Dict[str, str]:
    """Write the train/val/test splits of ``preset`` to ``root/<preset>/<split>.pt``; a file already
    there is reused when it was written for the same preset, sizes, seed, settings and generator
    version, else regenerated. ``cfg`` overrides the preset's generator settings."""
    cfg = cfg or preset_config(preset)
    paths = {}
    for name, n in (("train", num_train), ("val", num_val), ("test", num_test)):
        path = split_path(root, name, preset)
        spec = dict(preset=preset, n=n, seed=seed, cfg=dataclasses.asdict(cfg), version=CACHE_VERSION)
        remove_stale_temp_files(path)
        if os.path.exists(path):
            try:
                if torch_load_safely(path, "synthetic split file", mmap=True)["spec"] == spec:
                    paths[name] = path
                    continue
            except Exception:
                pass  # unreadable, refused or different: regenerate
        split = generate_split(name, n, seed, cfg)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # tensors and plain containers only, so the file loads with weights_only
        state = dict(spec=spec, split=split.state_dict())
        atomic_write(path, lambda f: torch.save(state, f))
        paths[name] = path
    return paths


def load_split(root: str, name: str, preset: str = "default") -> SyntheticSplit:
    """Load split ``name`` of ``preset`` written by :func:`generate_benchmark`; a file written for
    another preset is refused."""
    path = split_path(root, name, preset)
    if not os.path.exists(path):
        raise FileNotFoundError(f"synthetic split file missing: {path} (run `dapo-fast demo` or generate_benchmark)")
    # read in full: a later write to the file cannot change what was loaded
    state = torch_load_safely(path, "synthetic split file")
    fields = state.get("split") if isinstance(state, dict) else None
    problem = _cached_split_problem(fields)
    if problem:
        raise FileFormatError(f"synthetic split file {path} is malformed ({problem}); delete it to regenerate")
    spec = state.get("spec")
    saved_preset = spec.get("preset") if isinstance(spec, dict) else None
    if saved_preset != preset:
        raise FileFormatError(f"{path} holds the {saved_preset!r} preset, not {preset!r}")
    return SyntheticSplit.from_state_dict(fields)


def _cached_split_problem(fields) -> str:
    """What is wrong with a cached split's fields ("" when nothing)."""
    if not isinstance(fields, dict):
        return "no 'split' dict"
    images = fields.get("images")
    if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4):
        return "'images' is not a uint8 [N, 3, H, W] tensor"
    n = images.shape[0]
    for key in _PER_SAMPLE_LISTS:
        if not (isinstance(fields.get(key), list) and len(fields[key]) == n):
            return f"'{key}' is not a list of {n}"
    for key in _PER_SAMPLE_TENSORS:
        if not (isinstance(fields.get(key), torch.Tensor) and fields[key].dim() >= 1 and fields[key].shape[0] == n):
            return f"'{key}' is not a tensor of {n} rows"
    if not all(isinstance(spans, list) and all(isinstance(sp, (list, tuple)) for sp in spans)
               for spans in fields["spans"]):
        return "'spans' is not a list of span lists"
    cfg = fields.get("cfg")
    known = {f.name for f in dataclasses.fields(SyntheticConfig)}
    if not (isinstance(cfg, dict) and set(cfg) <= known):
        return "'cfg' is not a SyntheticConfig dict"
    return ""
