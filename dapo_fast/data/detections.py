"""Detector boxes for real images (the proposals of the proposal-based methods), and the batch form
of any sample's proposals.

The file format is JSON Lines, one image per line, read with ``json`` only (no code runs from data)::

    {"image_id": "1000092795", "boxes": [[x1, y1, x2, y2], ...], "scores": [0.98, ...]}

* ``image_id``: the dataset's image id as a string (Flickr30K Entities: the file stem; RefCOCO: the
  COCO image id), the ``image_id`` of the samples its boxes belong to;
* ``boxes``: the detector's boxes in the original image's pixels, corners (x1, y1, x2, y2);
* ``scores`` (optional): one confidence per box; when given, ``max_proposals`` keeps the most
  confident boxes (ReIR: the 50 best of the detector; QueryMatch: the 20 most confident queries).

Any other key on a line (labels, features) is ignored. An image listed twice, a box that is not
four finite numbers with x1 <= x2 and y1 <= y2, or scores of the wrong length raise ``ValueError``
naming the file and line.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch

from dapo_fast.safe_io import jsonl_error, jsonl_objects

Detections = Dict[str, Tuple[torch.Tensor, Optional[torch.Tensor]]]


def load_detections(path: str) -> Detections:
    """{image_id: (boxes float32 [J, 4], scores float32 [J] or None)} from a JSONL file."""
    what = "detections file"
    out: Detections = {}
    for number, rec in jsonl_objects(path, what, ValueError):
        def bad(reason: str) -> ValueError:
            return jsonl_error(ValueError, what, path, number, reason)

        if "image_id" not in rec or "boxes" not in rec:
            raise bad("each line must be an object with 'image_id' and 'boxes'")
        image_id = str(rec["image_id"])
        if image_id in out:
            raise bad(f"image_id {image_id!r} appears twice")
        boxes = rec["boxes"]
        if not isinstance(boxes, list) or not all(isinstance(b, list) and len(b) == 4 for b in boxes):
            raise bad("'boxes' must be a list of [x1, y1, x2, y2]")
        values = [v for b in boxes for v in b]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
            raise bad("box coordinates must be finite numbers")
        if any(b[2] < b[0] or b[3] < b[1] for b in boxes):
            raise bad("boxes must have x1 <= x2 and y1 <= y2")
        scores = rec.get("scores")
        if scores is not None:
            if (not isinstance(scores, list) or len(scores) != len(boxes)
                    or not all(isinstance(s, (int, float)) and not isinstance(s, bool) for s in scores)):
                raise bad(f"'scores' must be {len(boxes)} numbers, one per box")
            scores = torch.tensor(scores, dtype=torch.float32)
        out[image_id] = (torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), scores)
    return out


def proposals_of(sample: Dict, detections: Optional[Detections], max_proposals: int = 0) -> torch.Tensor:
    """The sample's proposals [J, 4] (image pixels): its own (the synthetic benchmark's) or the
    detector's boxes for its image, the ``max_proposals`` most confident when > 0."""
    boxes, scores = sample.get("proposals"), None
    if boxes is None:
        if detections is None:
            raise ValueError(f"sample {sample.get('image_id')!r} has no proposals: give a detections file "
                             f"(the method's 'proposals' option)")
        if sample["image_id"] not in detections:
            raise KeyError(f"no detector boxes for image_id {sample['image_id']!r} in the detections file")
        boxes, scores = detections[sample["image_id"]]
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if max_proposals > 0 and boxes.shape[0] > max_proposals:
        keep = (scores.argsort(descending=True, stable=True)[:max_proposals] if scores is not None
                else torch.arange(max_proposals))
        boxes = boxes[keep]
    return boxes


def collate_proposals(samples: List[Dict], image_sizes: torch.Tensor, input_size: int,
                      detections: Optional[Detections] = None, max_proposals: int = 0):
    """Proposals of a batch in the model's input frame (each image resized to ``input_size`` square).

    Returns (boxes [B, J, 4], valid bool [B, J]) with J the largest count in the batch. An image with
    fewer boxes repeats its own boxes cyclically to fill the rows (marked invalid), so padded rows
    are real boxes of that image: ops without a validity mask (hard-negative selection) then only
    ever see duplicates, never made-up boxes. An image without any box raises ValueError.
    """
    per_image = [proposals_of(s, detections, max_proposals) for s in samples]
    for s, b in zip(samples, per_image):
        if b.shape[0] == 0:
            raise ValueError(f"image {s.get('image_id')!r} has no proposals")
    J = max(b.shape[0] for b in per_image)
    boxes = torch.empty(len(samples), J, 4)
    valid = torch.zeros(len(samples), J, dtype=torch.bool)
    for i, (b, (h, w)) in enumerate(zip(per_image, image_sizes.tolist())):
        scale = torch.tensor([input_size / w, input_size / h] * 2)
        n = b.shape[0]
        boxes[i] = (b * scale)[torch.arange(J) % n]
        valid[i, :n] = True
    return boxes, valid
