"""Evaluation of a proposal-based grounder: accuracy@0.5 IoU of its top-1 box, overall and per
object-count subset, beside two references on the same entities: the best proposal (the oracle,
the ceiling of any method that picks a proposal without moving it) and a random proposal (the
expected accuracy of a uniform pick, computed exactly rather than sampled). PointIt (ReIR: the
predicted box's centre lies inside a ground-truth box) is reported too. Plus a PNG grid.

Ground truth follows the repository's bbox protocol (:func:`dapo_fast.eval.grounding.union_boxes`):
an entity that names several objects is the box around all of them, for the prediction and both
references alike.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch

from dapo_fast.eval.grounding import SUBSET_NAMES, by_subset, union_boxes
from dapo_fast.eval.stats import percent_with_intervals
from dapo_fast.ops import box_accuracy, box_iou

IOU_THRESHOLD = 0.5


def reference_hits(proposals: torch.Tensor, valid: torch.Tensor, gt: torch.Tensor):
    """(oracle bool [N], random float [N]): whether the best proposal reaches IoU 0.5 with each
    entity's box ``gt`` [N, 4], and the share of valid proposals that do (a random pick's accuracy)."""
    iou = box_iou(proposals.double(), gt.double()[:, None])[..., 0]  # [N, J]
    hit = (iou >= IOU_THRESHOLD) & valid
    return hit.any(-1), hit.sum(-1).double() / valid.sum(-1).clamp(min=1)


def centre_hits(pred: torch.Tensor, gt_boxes: List[torch.Tensor]) -> torch.Tensor:
    """[N] bool: the centre of the predicted box lies inside one of the entity's boxes (PointIt)."""
    out = torch.zeros(pred.shape[0], dtype=torch.bool)
    centres = (pred[:, :2] + pred[:, 2:]) / 2
    for i, boxes in enumerate(gt_boxes):
        c, b = centres[i].double(), boxes.double()
        out[i] = bool(((c >= b[:, :2]) & (c <= b[:, 2:])).all(-1).any()) if len(b) else False
    return out


def to_image_frame(boxes: torch.Tensor, image_sizes: torch.Tensor, input_size: int) -> torch.Tensor:
    """Boxes [B, ..., 4] in the model's square input frame -> each image's pixels (sizes [B, 2] as h, w)."""
    h, w = image_sizes[:, 0].to(boxes.dtype), image_sizes[:, 1].to(boxes.dtype)
    scale = torch.stack([w, h, w, h], dim=-1) / input_size
    return boxes * scale.reshape(scale.shape[0], *([1] * (boxes.dim() - 2)), 4)


@torch.no_grad()
def predict_entities(predict: Callable[[Dict], Dict[str, torch.Tensor]], collate_eval: Callable[[List[Dict]], Dict],
                     samples: List[Dict], input_size: int) -> Dict:
    """Run ``predict`` on a batch and flatten its boxes to one row per valid entity, in image pixels.

    ``predict(batch)`` returns named boxes [B, E, 4] in the input frame ("box": the grounding
    result; others, e.g. "proposal": the chosen proposal before refinement)."""
    b = collate_eval(samples)
    named = {k: to_image_frame(v.double(), b["image_sizes"], input_size) for k, v in predict(b).items()}
    props = to_image_frame(b["boxes"].double(), b["image_sizes"], input_size)
    rows = [(i, e) for i in range(len(samples)) for e in range(len(b["gt_boxes"][i])) if bool(b["entity_valid"][i, e])]
    ii = torch.tensor([i for i, _ in rows], dtype=torch.long)
    ee = torch.tensor([e for _, e in rows], dtype=torch.long)
    return dict(boxes={k: v[ii, ee] for k, v in named.items()}, proposals=props[ii], proposal_valid=b["box_valid"][ii],
                gt_boxes=[b["gt_boxes"][i][e].double() for i, e in rows], num_objects=b["num_objects"][ii],
                owner=ii.tolist(), phrases=[b["phrases"][i][e] for i, e in rows], raw_images=b["raw_images"],
                all_proposals=props)


def evaluate(predict: Callable[[Dict], Dict[str, torch.Tensor]], collate_eval: Callable[[List[Dict]], Dict], dataset,
             input_size: int, batch_size: int = 128, limit: Optional[int] = None) -> Dict:
    """{"acc", "miou", "oracle", "random", "pointit", "entities", "acc_<name>" and "miou_<name>" for
    every other box the predictor names, "subsets": {name: the same}} in percent (mean IoU x 100),
    each with its 95% bootstrap interval over test samples ("<key>_ci": [low, high]),
    over every entity of ``dataset``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    hits: Dict[str, List[torch.Tensor]] = {}
    ious: Dict[str, List[torch.Tensor]] = {}
    oracle, rand, point, counts, samples_of = [], [], [], [], []
    for i0 in range(0, n, batch_size):
        p = predict_entities(predict, collate_eval, [dataset[i] for i in range(i0, min(n, i0 + batch_size))],
                             input_size)
        gt = union_boxes(p["gt_boxes"]).double()
        for name, boxes in p["boxes"].items():
            hits.setdefault(name, []).append(box_accuracy(boxes, gt[:, None], IOU_THRESHOLD))
            ious.setdefault(name, []).append(box_iou(boxes[:, None], gt[:, None])[:, 0, 0])
        o, r = reference_hits(p["proposals"], p["proposal_valid"], gt)
        oracle.append(o)
        rand.append(r)
        point.append(centre_hits(p["boxes"]["box"], p["gt_boxes"]))
        counts.append(p["num_objects"])
        samples_of.append(torch.tensor(p["owner"], dtype=torch.long) + i0)
    columns = {("acc" if k == "box" else f"acc_{k}"): torch.cat(v).double() for k, v in hits.items()}
    # mean IoU (in %, like the rest) shows what moving a box buys below and above the 0.5 cut
    columns.update({("miou" if k == "box" else f"miou_{k}"): torch.cat(v).nan_to_num(0.0) for k, v in ious.items()})
    columns.update(oracle=torch.cat(oracle).double(), random=torch.cat(rand), pointit=torch.cat(point).double())
    cnt, sample = torch.cat(counts), torch.cat(samples_of)

    def summary(mask):
        return dict(entities=int(mask.sum()),
                    **percent_with_intervals({name: v[mask] for name, v in columns.items()}, sample[mask]))

    return by_subset(summary, cnt)


def columns(extra: Dict[str, str] = None):
    """Table columns for ``evaluate``'s result: accuracy overall and per subset, then the references."""
    cols = [("Acc all", "acc")] + [(f"Acc {s}", f"subsets.{s}.acc") for s in SUBSET_NAMES]
    cols += [(header, path) for header, path in (extra or {}).items()]
    return cols + [("mIoU", "miou"), ("PointIt", "pointit"), ("Oracle", "oracle"), ("Random", "random")]


@torch.no_grad()
def save_grid(predict: Callable[[Dict], Dict[str, torch.Tensor]], collate_eval: Callable[[List[Dict]], Dict], dataset,
              input_size: int, path: str, num: int = 12, cols: int = 4) -> str:
    """PNG grid, one panel per image (its first entity): proposals (thin grey), ground truth
    (green), the prediction (red, dashed) and, when the method moves boxes, the proposal it
    started from (orange, dotted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = [dataset[i] for i in range(min(num, len(dataset)))]
    p = predict_entities(predict, collate_eval, samples, input_size)
    gt = union_boxes(p["gt_boxes"]).double()
    first = {}
    for k, i in enumerate(p["owner"]):
        first.setdefault(i, k)
    rows = (len(first) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")

    def rect(ax, box, **kw):
        x0, y0, x1, y1 = box.tolist()
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **kw))

    for ax, (i, k) in zip(axes.flat, first.items()):
        ax.imshow(p["raw_images"][i].permute(1, 2, 0).numpy())
        for box, ok in zip(p["all_proposals"][i], p["proposal_valid"][k]):
            if ok:
                rect(ax, box, color="white", lw=0.4, alpha=0.5)
        for box in p["gt_boxes"][k]:
            rect(ax, box, color="lime", lw=1.5)
        if "proposal" in p["boxes"]:
            rect(ax, p["boxes"]["proposal"][k], color="orange", lw=1.2, ls=":")
        pred = p["boxes"]["box"][k]
        rect(ax, pred, color="red", lw=1.5, ls="--")
        iou = float(box_iou(pred[None], gt[k][None])[0, 0])
        ax.set_title(f"{p['phrases'][k]} ({int(p['num_objects'][k])} obj) IoU {iou:.2f}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
