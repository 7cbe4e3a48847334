"""How faithful generated images and their attention maps are, measured on the synthetic palette.

For each prompted entity ("red circle"): pixels within ``max_distance`` (RGB) of the entity's
palette colour form connected components (8-connectivity); a component counts as the entity when
its shape, cropped to its bounding box and resized to 16x16, is closest (IoU) to the template of
the entity's shape, with IoU >= ``min_iou``. The templates come from the benchmark's own
generator (single-object images, mask cropped and resized the same way), so the check knows the
shapes exactly as the benchmark draws them. The attention check reads the peak of the entity's
final-step map resized to the image (as the pointing game reads a heatmap) and asks whether it
falls on a matched component (or, weaker, on any pixel of the entity's colour).

The same check on the benchmark's real images (with their captions) calibrates it: a perfect
generator would score what the real images score.
"""
from __future__ import annotations

import functools
import io
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["palette", "colour_masks", "connected_components", "shape_templates", "EntityCheck", "check_entities",
           "fidelity_of_set", "fidelity_of_images", "save_fidelity_sheet"]

TEMPLATE_SIZE = 16


def palette() -> Tuple[List[str], torch.Tensor]:
    """(colour names, float [C, 3] RGB) of the synthetic benchmark."""
    from dapo_fast.data.synthetic import COLOURS

    names = list(COLOURS)
    return names, torch.tensor([COLOURS[n] for n in names], dtype=torch.float32)


def colour_masks(image: torch.Tensor, max_distance: float = 80.0, min_saturation: float = 60.0) -> torch.Tensor:
    """bool [C, H, W]: pixels of uint8 ``image`` [3, H, W] whose nearest palette colour is colour c,
    within ``max_distance``, and whose saturation (max - min channel) is at least
    ``min_saturation``: the palette's colours have 125-220, the benchmark's tinted grey backgrounds
    at most about 50, and a dark greenish grey lies within 80 of the palette's green."""
    _, rgb = palette()
    pixels = image.float().permute(1, 2, 0)                                   # [H, W, 3]
    distance = (pixels[None] - rgb[:, None, None, :]).norm(dim=-1)            # [C, H, W]
    nearest = distance.argmin(0)
    saturation = pixels.amax(-1) - pixels.amin(-1)
    close = (distance.min(0).values <= max_distance) & (saturation >= min_saturation)
    return torch.stack([(nearest == c) & close for c in range(rgb.shape[0])])


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """long [H, W]: 8-connected component labels of bool ``mask`` [H, W] (0 = outside the mask,
    otherwise 1 + the smallest flat index of the component), by repeated 3x3 min-propagation."""
    height, width = mask.shape
    big = height * width + 1
    index = torch.arange(1, height * width + 1, dtype=torch.float32).reshape(1, 1, height, width)
    labels = torch.where(mask[None, None], index, torch.full_like(index, float(big)))
    while True:
        spread = -F.max_pool2d(-labels, 3, stride=1, padding=1)
        spread = torch.where(mask[None, None], spread, torch.full_like(spread, float(big)))
        if torch.equal(spread, labels):
            break
        labels = spread
    return torch.where(mask, labels[0, 0].long(), torch.zeros_like(labels[0, 0].long()))


def _normalised(mask: torch.Tensor) -> torch.Tensor:
    """A component's mask cropped to its bounding box and resized to TEMPLATE_SIZE^2 (area)."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    crop = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].float()
    return F.interpolate(crop[None, None], size=(TEMPLATE_SIZE, TEMPLATE_SIZE), mode="area")[0, 0]


@functools.lru_cache(maxsize=1)
def shape_templates(per_shape: int = 24, seed: int = 0) -> Tuple[Tuple[str, ...], torch.Tensor]:
    """(shape names, bool [S, 16, 16]): the mean normalised mask of ``per_shape`` single objects of
    each shape drawn by the benchmark's generator, thresholded at 0.5."""
    from dapo_fast.data.synthetic import SHAPES, SyntheticConfig, generate_sample

    rng = np.random.default_rng(seed)
    cfg = SyntheticConfig(min_objects=1, max_objects=1)
    sums = {s: torch.zeros(TEMPLATE_SIZE, TEMPLATE_SIZE) for s in SHAPES}
    counts = dict.fromkeys(SHAPES, 0)
    while min(counts.values()) < per_shape:
        record = generate_sample(rng, cfg, num_objects=1)
        shape = record["phrases"][0].split()[-1]
        if counts[shape] < per_shape:
            sums[shape] += _normalised(torch.from_numpy(record["gt_masks"][0]))
            counts[shape] += 1
    return tuple(SHAPES), torch.stack([sums[s] / counts[s] >= 0.5 for s in SHAPES])


def _classify(component: torch.Tensor, min_iou: float) -> Optional[str]:
    names, templates = shape_templates()
    crop = _normalised(component) >= 0.5
    inter = (templates & crop).flatten(1).sum(1).float()
    union = (templates | crop).flatten(1).sum(1).float().clamp_min(1)
    iou = inter / union
    best = int(iou.argmax())
    return names[best] if float(iou[best]) >= min_iou else None


class EntityCheck(Dict):
    """{"colour": bool (any pixel of the colour), "found": bool (a component of the colour
    classified as the shape), "mask": bool [H, W] (the matched components), "colour_mask"}."""


def check_entities(image: torch.Tensor, entities: Sequence[str], max_distance: float = 80.0,
                   min_saturation: float = 60.0, min_area: int = 8, min_iou: float = 0.5) -> List[EntityCheck]:
    """Look for each "colour shape" entity (an optional size word first is ignored) on uint8
    ``image`` [3, H, W]."""
    names, _ = palette()
    masks = colour_masks(image, max_distance, min_saturation)
    out = []
    for entity in entities:
        words = entity.split()
        colour, shape = words[-2], words[-1]
        if colour not in names:
            raise ValueError(f"entity {entity!r}: {colour!r} is not a colour of the synthetic palette {names}")
        colour_mask = masks[names.index(colour)]
        labels = connected_components(colour_mask)
        matched = torch.zeros_like(colour_mask)
        for label in labels.unique():
            if label == 0:
                continue
            component = labels == label
            if int(component.sum()) >= min_area and _classify(component, min_iou) == shape:
                matched |= component
        out.append(EntityCheck(colour=bool(colour_mask.any()), found=bool(matched.any()), mask=matched,
                               colour_mask=colour_mask))
    return out


def fidelity_of_images(images: Sequence[torch.Tensor], entities: Sequence[Sequence[str]],
                       maps: Optional[Sequence[torch.Tensor]] = None, **kwargs) -> Dict[str, float]:
    """Percentages over all prompted entities: ``colour`` (the colour appears), ``found`` (colour
    and shape), and with ``maps`` (per image [E, h, w]): ``peak_on_entity`` (the map's resized
    peak lies on a matched component), ``peak_on_colour``; ``all_found``: images with every
    entity found."""
    from dapo_fast.ops import resized_argmax

    colour = found = on_entity = on_colour = total = complete = 0
    for i, (image, names) in enumerate(zip(images, entities)):
        checks = check_entities(image, names, **kwargs)
        peaks = None
        if maps is not None:
            peaks = resized_argmax(maps[i][:len(names)].float(), tuple(image.shape[-2:])).tolist()
        complete += all(c["found"] for c in checks)
        for e, c in enumerate(checks):
            total += 1
            colour += c["colour"]
            found += c["found"]
            if peaks is not None:
                row, col = peaks[e]
                on_entity += bool(c["mask"][row, col])
                on_colour += bool(c["colour_mask"][row, col])
    pct = lambda n: 100.0 * n / max(total, 1)  # noqa: E731
    out = dict(entities=total, images=len(images), colour=pct(colour), found=pct(found),
               all_found=100.0 * complete / max(len(images), 1))
    if maps is not None:
        out.update(peak_on_entity=pct(on_entity), peak_on_colour=pct(on_colour))
    return out


def fidelity_of_set(generated, limit: Optional[int] = None, **kwargs) -> Dict[str, float]:
    """:func:`fidelity_of_images` over a :class:`dapo_fast.diffusion.generate.GeneratedSet`."""
    from dapo_fast.data.sample import load_image

    n = len(generated) if limit is None else min(limit, len(generated))
    samples = [generated[i] for i in range(n)]
    return fidelity_of_images([load_image(s["image"]) for s in samples], [s["phrases"] for s in samples],
                              [s["attn_maps"] for s in samples], **kwargs)


def save_fidelity_sheet(generated, path: str, num: int = 8, **kwargs) -> None:
    """One PNG of the first ``num`` images of a generated set, one row each: the image with its
    caption, then each entity's final-step attention map overlaid, titled with what the check
    found (the entity, only its colour, or neither) and marked at its resized peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from dapo_fast.data.sample import load_image
    from dapo_fast.diffusion.generate import overlay_map
    from dapo_fast.ops import resized_argmax

    samples = [generated[i] for i in range(min(num, len(generated)))]
    if not samples:
        raise ValueError(f"no generated images in {generated.root}")
    cols = 1 + max(len(s["phrases"]) for s in samples)
    fig, axes = plt.subplots(len(samples), cols, figsize=(1.9 * cols, 2.0 * len(samples)), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, sample in zip(axes, samples):
        image = load_image(sample["image"])
        checks = check_entities(image, sample["phrases"], **kwargs)
        maps = sample["attn_maps"][:len(checks)].float()
        peaks = resized_argmax(maps, tuple(image.shape[-2:])).tolist()
        row[0].imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
        row[0].set_title(sample["caption"].replace(" left of ", "\nleft of ").replace(" right of ", "\nright of ")
                         .replace(" above ", "\nabove ").replace(" below ", "\nbelow ").replace(" and ", "\nand "),
                         fontsize=6)
        for ax, name, check, heat, (y, x) in zip(row[1:], sample["phrases"], checks, maps, peaks):
            overlay_map(ax, image, heat)
            ax.plot([x], [y], marker="+", color="white", markersize=8, mew=1.5)
            drawn = "found" if check["found"] else "colour only" if check["colour"] else "missing"
            peak = "peak on it" if check["mask"][y, x] else "peak on colour" if check["colour_mask"][y, x] else "peak off"
            ax.set_title(f"{name}\n{drawn}, {peak}", fontsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    plt.close(fig)
    # 256 colours: a third of the bytes for a sheet meant for documentation pages
    Image.open(buffer).convert("RGB").quantize(256).save(path, optimize=True)
