"""RefCOCO / RefCOCO+ / RefCOCOg: ``refs(<split_by>).p`` + ``instances.json`` -> grounding sample dicts.

Layout under ``root`` (the refer toolkit's)::

    <dataset>/refs(<split_by>).p    pickled list of refs: ref_id, ann_id, image_id, split, sentences[{sent}]
    <dataset>/instances.json        COCO: images[{id, file_name, height, width}], annotations[{id, image_id, bbox xywh}]
    <image_dir>/<file_name>         the COCO train2014 images

One sample per referring sentence; the whole sentence is the entity; its box is the referred
annotation's. ``num_objects`` = annotated instances in the image (ScoreQ).
"""
from __future__ import annotations

import json
import os
import pickle
from typing import Dict, List

import torch

from dapo_fast.data.sample import make_sample


def load_refcoco(root: str, dataset: str = "refcoco", split: str = "val", split_by: str = "unc",
                 image_dir: str = "images") -> List[Dict]:
    refs_path = os.path.join(root, dataset, f"refs({split_by}).p")
    inst_path = os.path.join(root, dataset, "instances.json")
    for path, what in ((refs_path, f"refs({split_by}).p"), (inst_path, "instances.json")):
        if not os.path.exists(path):
            raise FileNotFoundError(f"RefCOCO: missing {what}: {path}")
    with open(refs_path, "rb") as f:
        refs = pickle.load(f)
    with open(inst_path) as f:
        inst = json.load(f)
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    per_image: Dict[int, int] = {}
    for a in inst["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    samples = []
    for ref in refs:
        if ref["split"] != split:
            continue
        ann = anns.get(ref["ann_id"])
        if ann is None:
            raise ValueError(f"RefCOCO: ref {ref['ref_id']} points to annotation {ref['ann_id']} missing from {inst_path}")
        x, y, w, h = ann["bbox"]
        box = torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32)
        im = images[ref["image_id"]]
        for sent in ref["sentences"]:
            text = sent["sent"].strip()
            samples.append(make_sample(
                image=os.path.join(root, image_dir, im["file_name"]), image_id=str(ref["image_id"]),
                caption=text, phrases=[text], spans=[(0, len(text))], gt_boxes=[box],
                num_objects=per_image[ref["image_id"]]))
    return samples
