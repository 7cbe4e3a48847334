"""Flickr30K Entities: ``Sentences/<id>.txt`` + ``Annotations/<id>.xml`` -> grounding sample dicts.

Layout under ``root``::

    Sentences/<image_id>.txt     five captions per image, entities marked "[/EN#<id>/<type> phrase]"
    Annotations/<image_id>.xml   PASCAL-VOC style: <size>, <object><name>id</name>...<bndbox>
    <image_dir>/<image_id>.jpg   the images (read when a batch is collated)
    train.txt / val.txt / test.txt   image ids per split

One sample per (image, caption). Entities without a box (scene/``notvisual``/``0``) are dropped;
an entity id with several boxes keeps them all (pointing game accepts any).
"""
from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

import torch

from dapo_fast.data.sample import make_sample

_ENTITY = re.compile(r"\[/EN#(\d+)/([^\s\]]+)\s+([^\]]*)\]")


def parse_sentence(line: str) -> Tuple[str, List[Dict]]:
    """"[/EN#18/people A child] in [/EN#19/clothing a pink dress]" ->
    ("A child in a pink dress", [{"id": "18", "type": "people", "phrase": "A child", "span": (0, 7)}, ...])."""
    caption, entities, last = "", [], 0
    for m in _ENTITY.finditer(line):
        caption += line[last:m.start()]
        start = len(caption)
        phrase = m.group(3).strip()
        caption += phrase
        entities.append(dict(id=m.group(1), type=m.group(2), phrase=phrase, span=(start, len(caption))))
        last = m.end()
    caption += line[last:]
    return " ".join(caption.split()) if "  " in caption else caption.strip(), entities


def parse_annotation(path: str) -> Tuple[Dict[str, List[List[float]]], Tuple[int, int]]:
    """{entity_id: [[x0,y0,x1,y1], ...]} and (height, width) from one Annotations xml."""
    root = ET.parse(path).getroot()
    size = root.find("size")
    hw = (int(size.find("height").text), int(size.find("width").text)) if size is not None else (0, 0)
    boxes: Dict[str, List[List[float]]] = {}
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        xyxy = [float(box.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]
        xyxy[2] += 1.0  # VOC boxes are inclusive pixel indices
        xyxy[3] += 1.0
        for name in obj.findall("name"):
            boxes.setdefault(name.text.strip(), []).append(xyxy)
    return boxes, hw


def _require(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"Flickr30K Entities: missing {what}: {path}")
    return path


def load_flickr30k(root: str, split: str = "test", image_dir: str = "flickr30k-images") -> List[Dict]:
    """All (image, caption) samples of ``split`` whose caption has at least one boxed entity."""
    ids_file = _require(os.path.join(root, f"{split}.txt"), f"split file '{split}.txt'")
    with open(ids_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    samples = []
    for image_id in ids:
        sent = _require(os.path.join(root, "Sentences", f"{image_id}.txt"), "sentence file")
        ann = _require(os.path.join(root, "Annotations", f"{image_id}.xml"), "annotation file")
        boxes, _ = parse_annotation(ann)
        n_objects = sum(len(b) for b in boxes.values())
        image_path = os.path.join(root, image_dir, f"{image_id}.jpg")
        with open(sent, encoding="utf-8") as f:
            for line in f:
                caption, entities = parse_sentence(line.strip())
                entities = [e for e in entities if e["id"] in boxes]
                if not entities:
                    continue
                samples.append(make_sample(
                    image=image_path, image_id=image_id, caption=caption,
                    phrases=[e["phrase"] for e in entities], spans=[e["span"] for e in entities],
                    gt_boxes=[torch.tensor(boxes[e["id"]], dtype=torch.float32) for e in entities],
                    num_objects=n_objects))
    return samples
