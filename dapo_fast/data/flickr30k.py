"""Flickr30K Entities: ``Sentences/<id>.txt`` + ``Annotations/<id>.xml`` -> grounding sample dicts.

Layout under ``root``::

    Sentences/<image_id>.txt     five captions per image, entities marked "[/EN#<id>/<type> phrase]"
    Annotations/<image_id>.xml   PASCAL-VOC style: <size>, <object><name>id</name>...<bndbox>
    <image_dir>/<image_id>.jpg   the images (read when a batch is collated)
    train.txt / val.txt / test.txt   image ids per split

One sample per (image, caption). Entities without a box (scene/``notvisual``/``0``) are dropped;
an entity id with several boxes keeps them all (pointing game accepts any).

Image ids must name files inside their folders (an id such as ``../x`` is refused, naming it); a
malformed annotation or sentence file raises :class:`~dapo_fast.safe_io.FileFormatError` naming
the file. Annotations with a DTD are refused (the real ones have none, and entity definitions are
how XML files expand to gigabytes).
"""
from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from typing import Dict, List, Tuple

import torch

from dapo_fast.data.sample import make_sample
from dapo_fast.safe_io import FileFormatError, path_inside

_ENTITY = re.compile(r"\[/EN#(\d+)/([^\s\]]+)\s+([^\]]*)\]")


def _append_collapsed(caption: str, text: str) -> str:
    """``caption + text`` with every whitespace run as one space and none at the start."""
    text = re.sub(r"\s+", " ", text)
    return caption + (text.lstrip(" ") if not caption or caption.endswith(" ") else text)


def parse_sentence(line: str) -> Tuple[str, List[Dict]]:
    """"[/EN#18/people A child] in [/EN#19/clothing a pink dress]" ->
    ("A child in a pink dress", [{"id": "18", "type": "people", "phrase": "A child", "span": (0, 7)}, ...]).

    Whitespace runs become one space (in the caption and the phrases alike), so every span points at
    its phrase: ``caption[a:b] == phrase``. Entities with an empty phrase are dropped."""
    caption, entities, last = "", [], 0
    for m in _ENTITY.finditer(line):
        caption = _append_collapsed(caption, line[last:m.start()])
        last = m.end()
        phrase = " ".join(m.group(3).split())
        if not phrase:
            continue
        start = len(caption)
        caption += phrase
        entities.append(dict(id=m.group(1), type=m.group(2), phrase=phrase, span=(start, len(caption))))
    caption = _append_collapsed(caption, line[last:]).rstrip(" ")
    return caption, entities


def _number(element, tag: str, path: str, kind=float):
    """``kind`` of the text of ``element``'s child ``tag``; FileFormatError naming the file when absent or not a number."""
    child = element.find(tag)
    try:
        value = kind(child.text)
    except (AttributeError, TypeError, ValueError):
        raise FileFormatError(f"Flickr30K annotation {path}: <{element.tag}> needs a numeric <{tag}>, got "
                              f"{None if child is None else child.text!r}") from None
    if not math.isfinite(value):
        raise FileFormatError(f"Flickr30K annotation {path}: <{tag}> is {value}")
    return value


def parse_annotation(path: str) -> Tuple[Dict[str, List[List[float]]], Tuple[int, int]]:
    """{entity_id: [[x0,y0,x1,y1], ...]} and (height, width) from one Annotations xml."""
    with open(path, "rb") as f:
        text = f.read()
    if b"<!DOCTYPE" in text or b"<!ENTITY" in text:
        raise FileFormatError(f"Flickr30K annotation {path} declares a DTD or entities, which annotations never do")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise FileFormatError(f"Flickr30K annotation {path} is not well-formed XML: {err}") from None
    size = root.find("size")
    hw = (_number(size, "height", path, int), _number(size, "width", path, int)) if size is not None else (0, 0)
    boxes: Dict[str, List[List[float]]] = {}
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        if box is None:
            continue
        xyxy = [_number(box, k, path) for k in ("xmin", "ymin", "xmax", "ymax")]
        xyxy[2] += 1.0  # VOC boxes are inclusive pixel indices
        xyxy[3] += 1.0
        for name in obj.findall("name"):
            if name.text is None or not name.text.strip():
                raise FileFormatError(f"Flickr30K annotation {path}: an <object> has an empty <name>")
            boxes.setdefault(name.text.strip(), []).append(xyxy)
    return boxes, hw


def _text_lines(path: str) -> List[str]:
    """The lines of a UTF-8 text file; FileFormatError naming the file when it is not UTF-8."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.readlines()
    except UnicodeDecodeError as err:
        raise FileFormatError(f"Flickr30K: {path} is not UTF-8 text ({err})") from None


def _require(path: str, what: str) -> str:
    if not os.path.exists(path):
        raise FileNotFoundError(f"Flickr30K Entities: missing {what}: {path}")
    return path


def load_flickr30k(root: str, split: str = "test", image_dir: str = "flickr30k-images") -> List[Dict]:
    """All (image, caption) samples of ``split`` whose caption has at least one boxed entity."""
    ids_file = _require(os.path.join(root, f"{split}.txt"), f"split file '{split}.txt'")
    ids = [line.strip() for line in _text_lines(ids_file) if line.strip()]
    samples = []
    for image_id in ids:
        where = f"Flickr30K image id {image_id!r} in {ids_file}"
        sent = _require(path_inside(os.path.join(root, "Sentences"), f"{image_id}.txt", where), "sentence file")
        ann = _require(path_inside(os.path.join(root, "Annotations"), f"{image_id}.xml", where), "annotation file")
        boxes, _ = parse_annotation(ann)
        n_objects = sum(len(b) for b in boxes.values())
        image_path = path_inside(os.path.join(root, image_dir), f"{image_id}.jpg", where)
        for line in _text_lines(sent):
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
