"""Evaluation of a heatmap grounder: pointing game and bbox accuracy, overall and per object-count
subset, computed with the public metric ops; plus a PNG grid of heatmaps with predicted and
ground-truth boxes."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from dapo_fast.data.sample import collate_eval
from dapo_fast.eval.stats import percent_with_intervals
from dapo_fast.ops import box_accuracy, heatmap_to_box, pointing_game

SUBSETS = (("1-2", 1, 2), ("3", 3, 3), ("4", 4, 4), ("5", 5, 5), ("6-8", 6, 8))
SUBSET_NAMES = tuple(name for name, _, _ in SUBSETS) + ("6+",)  # the "subsets" keys of a result


def by_subset(summary, num_objects: torch.Tensor) -> Dict:
    """``summary(mask)`` of every entity, with ``"subsets"``: the same per object-count subset of
    SUBSETS and for 6+ objects (``num_objects``: each entity's image's count)."""
    res = summary(torch.ones_like(num_objects, dtype=torch.bool))
    res["subsets"] = {name: summary((num_objects >= lo) & (num_objects <= hi)) for name, lo, hi in SUBSETS}
    res["subsets"]["6+"] = summary(num_objects >= 6)
    return res


@torch.no_grad()
def predict(model, samples: List[Dict], encode, image_size: int, max_entities: int) -> Dict:
    """Heatmaps of every valid entity of ``samples`` plus their ground truth, flattened to N entities."""
    b = collate_eval(samples, encode, image_size, max_entities)
    out = model(b["images"], b["phrase_tokens"], b["entity_valid"])
    hm, gts, sizes, nobj, owner, phrases = [], [], [], [], [], []
    for i in range(len(samples)):
        for e, boxes in enumerate(b["gt_boxes"][i]):
            if not bool(b["entity_valid"][i, e]):
                continue
            hm.append(out["heatmaps"][i, e])
            gts.append(boxes.float())
            sizes.append(b["image_sizes"][i])
            nobj.append(int(b["num_objects"][i]))
            owner.append(i)
            phrases.append(b["phrases"][i][e])
    return dict(heatmaps=torch.stack(hm), gt_boxes=gts, image_sizes=torch.stack(sizes),
                num_objects=torch.tensor(nobj), owner=owner, phrases=phrases, raw_images=b["raw_images"])


def boxes_in_image_pixels(heatmaps: torch.Tensor, image_sizes: torch.Tensor, box_threshold: float = 0.5) -> torch.Tensor:
    """One predicted box per heatmap, in its image's pixels: the heatmap is resized bilinearly to the
    image first (WWbL reads its boxes off a map at the image's resolution; read off the stride-4 map
    the box snaps to 4-pixel cells and a small object's box cannot reach IoU 0.5); ``box_threshold``
    is heatmap_to_box's ``rel_threshold`` (WWbL: 0.5)."""
    boxes = heatmaps.new_empty(heatmaps.shape[0], 4)
    for size in torch.unique(image_sizes, dim=0):
        rows = (image_sizes == size).all(1).nonzero().flatten()
        resized = F.interpolate(heatmaps[rows, None], size=tuple(int(v) for v in size), mode="bilinear",
                                align_corners=False)[:, 0]
        boxes[rows] = heatmap_to_box(resized, rel_threshold=box_threshold).to(boxes.dtype)
    return boxes


def union_boxes(gt_boxes: List[torch.Tensor]) -> torch.Tensor:
    """[N, 4]: the box around each entity's ground-truth boxes. Bbox accuracy compares the predicted
    box with it, as WWbL's evaluation does (an entity naming two objects, "two men", is one region;
    the predicted box is the union of the heatmap's components too). The pointing game keeps the
    separate boxes: a peak on either object is a hit."""
    nan = torch.full((4,), float("nan"))
    return torch.stack([torch.cat([b[:, :2].amin(0), b[:, 2:].amax(0)]).float() if len(b) else nan  # no box: a miss
                        for b in gt_boxes])


def evaluate(model, dataset, encode, image_size: int, max_entities: int, batch_size: int = 128,
             limit: Optional[int] = None, box_threshold: float = 0.5) -> Dict:
    """Pointing game and bbox accuracy (%) over every entity of ``dataset`` (first ``limit`` samples
    when given), overall and per object-count subset, each with its 95% bootstrap interval over the
    test samples (:func:`dapo_fast.eval.stats.bootstrap_interval`; an image's entities are resampled
    together). A predicted box surrounds the heat at >= ``box_threshold`` of the map's peak:

        {"pointing", "pointing_ci": [low, high], "bbox", "bbox_ci", "entities",
         "subsets": {name: the same keys},
         "per_entity": {"pointing": [0/1], "bbox": [0/1], "sample": [test sample index], "num_objects": [...]}}

    ``per_entity`` lets two runs on the same test set be compared pair by pair
    (:func:`dapo_fast.eval.stats.paired_bootstrap_difference`)."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    hits, accs, counts, samples_of = [], [], [], []
    was_training = model.training
    model.eval()
    for i0 in range(0, n, batch_size):
        samples = [dataset[i] for i in range(i0, min(n, i0 + batch_size))]
        p = predict(model, samples, encode, image_size, max_entities)
        hits.append(pointing_game(p["heatmaps"], p["gt_boxes"], p["image_sizes"]))
        boxes = boxes_in_image_pixels(p["heatmaps"], p["image_sizes"], box_threshold)
        accs.append(box_accuracy(boxes, union_boxes(p["gt_boxes"])[:, None]))
        counts.append(p["num_objects"])
        samples_of.append(torch.tensor(p["owner"], dtype=torch.long) + i0)
    model.train(was_training)
    hit, acc, cnt = torch.cat(hits).float(), torch.cat(accs).float(), torch.cat(counts)
    sample = torch.cat(samples_of)

    def summary(mask):
        return dict(entities=int(mask.sum()),
                    **percent_with_intervals({"pointing": hit[mask], "bbox": acc[mask]}, sample[mask]))

    res = by_subset(summary, cnt)
    res["per_entity"] = dict(pointing=hit.tolist(), bbox=acc.tolist(), sample=sample.tolist(), num_objects=cnt.tolist())
    return res


@torch.no_grad()
def save_grid(model, dataset, encode, image_size: int, max_entities: int, path: str, num: int = 12,
              cols: int = 4, box_threshold: float = 0.5) -> str:
    """PNG grid: each panel = image, heatmap overlay, predicted box (red), ground-truth boxes (green)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model.eval()
    samples = [dataset[i] for i in range(min(num, len(dataset)))]
    p = predict(model, samples, encode, image_size, max_entities)
    boxes = boxes_in_image_pixels(p["heatmaps"], p["image_sizes"], box_threshold)
    seen, panels = set(), []
    for k, i in enumerate(p["owner"]):  # first entity of each image
        if i not in seen:
            seen.add(i)
            panels.append(k)
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, k in zip(axes.flat, panels):
        img = p["raw_images"][p["owner"][k]]
        H, W = img.shape[-2:]
        heat = F.interpolate(p["heatmaps"][k][None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        ax.imshow(img.permute(1, 2, 0).numpy())
        rel = (heat / max(1e-6, float(heat.max()))).numpy()
        # opacity follows the heat, so the image stays visible where the heatmap is cold
        ax.imshow(rel, cmap="jet", alpha=0.7 * rel, vmin=0, vmax=1)
        for g in p["gt_boxes"][k]:
            x0, y0, x1, y1 = g.tolist()
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="lime", lw=1.5))
        x0, y0, x1, y1 = boxes[k].tolist()
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="red", lw=1.5, ls="--"))
        ax.set_title(f"{p['phrases'][k]} ({int(p['num_objects'][k])} obj)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
