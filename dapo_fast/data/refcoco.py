"""RefCOCO / RefCOCO+ / RefCOCOg: ``refs(<split_by>).p`` + ``instances.json`` -> grounding sample dicts.

Layout under ``root`` (the refer toolkit's)::

    <dataset>/refs(<split_by>).p    pickled list of refs: ref_id, ann_id, image_id, split, sentences[{sent}]
    <dataset>/instances.json        COCO: images[{id, file_name, height, width}], annotations[{id, image_id, bbox xywh}]
    <image_dir>/<file_name>         the COCO train2014 images

One sample per referring sentence; the whole sentence is the entity; its box is the referred
annotation's. ``num_objects`` = annotated instances in the image (ScoreQ).

Nothing in these files runs: ``refs(*).p`` is unpickled admitting only plain containers, strings
and numbers (:func:`~dapo_fast.safe_io.load_plain_pickle`; Python 2 byte strings decode as
latin-1). A malformed file raises :class:`~dapo_fast.safe_io.FileFormatError` naming the file and
the record, and an image file name that leads out of the image folder is refused, naming its id.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List

import torch

from dapo_fast.data.sample import make_sample
from dapo_fast.safe_io import FileFormatError, load_plain_pickle, path_inside

_ID = (int, str)


def _field(record: Any, key: str, types, where: str):
    """``record[key]`` when ``record`` is a dict holding a value of ``types`` there; else FileFormatError."""
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, types) or isinstance(value, bool):
        names = "/".join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))
        raise FileFormatError(f"RefCOCO: {where} needs '{key}' ({names}), got {value!r:.80}")
    return value


def _read_instances(path: str):
    """{image id: image record}, {annotation id: xyxy box}, {image id: annotation count} from instances.json."""
    try:
        with open(path, encoding="utf-8") as f:
            inst = json.load(f)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FileFormatError(f"RefCOCO: {path} is not valid JSON ({type(err).__name__}: {err})") from None
    images, boxes, per_image = {}, {}, {}
    for i, im in enumerate(_field(inst, "images", list, path)):
        where = f"{path} images[{i}]"
        images[_field(im, "id", _ID, where)] = _field(im, "file_name", str, where)
    for i, ann in enumerate(_field(inst, "annotations", list, path)):
        where = f"{path} annotations[{i}]"
        image_id = _field(ann, "image_id", _ID, where)
        bbox = _field(ann, "bbox", list, where)
        try:
            x, y, w, h = (float(v) for v in bbox if isinstance(v, (int, float)) and not isinstance(v, bool))
        except (ValueError, OverflowError):  # not four numbers, or an int beyond float range
            x = y = w = h = math.nan
        xyxy = [x, y, x + w, y + h]
        if not (all(math.isfinite(v) for v in xyxy) and w >= 0 and h >= 0 and len(bbox) == 4):
            raise FileFormatError(f"RefCOCO: {where} needs 'bbox' [x, y, w, h] (finite, w, h >= 0), got {bbox!r:.80}")
        boxes[_field(ann, "id", _ID, where)] = xyxy
        per_image[image_id] = per_image.get(image_id, 0) + 1
    return images, boxes, per_image


def load_refcoco(root: str, dataset: str = "refcoco", split: str = "val", split_by: str = "unc",
                 image_dir: str = "images") -> List[Dict]:
    refs_path = os.path.join(root, dataset, f"refs({split_by}).p")
    inst_path = os.path.join(root, dataset, "instances.json")
    for path, what in ((refs_path, f"refs({split_by}).p"), (inst_path, "instances.json")):
        if not os.path.exists(path):
            raise FileNotFoundError(f"RefCOCO: missing {what}: {path}")
    refs = load_plain_pickle(refs_path)
    images, boxes, per_image = _read_instances(inst_path)
    if not isinstance(refs, list):
        raise FileFormatError(f"RefCOCO: {refs_path} must hold a list of refs, got {type(refs).__name__}")
    samples = []
    for i, ref in enumerate(refs):
        where = f"{refs_path} ref [{i}]"
        if _field(ref, "split", str, where) != split:
            continue
        ann_id, image_id = _field(ref, "ann_id", _ID, where), _field(ref, "image_id", _ID, where)
        if ann_id not in boxes:
            raise FileFormatError(f"RefCOCO: {where} points to annotation {ann_id!r}, missing from {inst_path}")
        if image_id not in images:
            raise FileFormatError(f"RefCOCO: {where} points to image {image_id!r}, missing from {inst_path}")
        image = path_inside(os.path.join(root, image_dir), images[image_id],
                            f"RefCOCO image {image_id!r} in {inst_path}")
        box = torch.tensor([boxes[ann_id]], dtype=torch.float32)
        for j, sent in enumerate(_field(ref, "sentences", list, where)):
            text = _field(sent, "sent", str, f"{where} sentences[{j}]").strip()
            samples.append(make_sample(
                image=image, image_id=str(image_id), caption=text, phrases=[text], spans=[(0, len(text))],
                gt_boxes=[box], num_objects=per_image.get(image_id, 0)))
    return samples
