"""Tiny fixture files in the Flickr30K Entities and RefCOCO formats, parsed into sample dicts."""
import json
import os
import pickle

import pytest
import torch

from dapo_fast.data.flickr30k import load_flickr30k, parse_sentence
from dapo_fast.data.refcoco import load_refcoco

SENTENCES = """[/EN#18/people A child] in [/EN#19/clothing a pink dress] is climbing up [/EN#20/other a set of stairs] in [/EN#21/scene an entry way] .
[/EN#18/people A little girl] in [/EN#19/clothing pink] climbs [/EN#20/notvisual the stairs] .
"""
ANNOTATION = """<annotation><filename>1000.jpg</filename><size><width>500</width><height>375</height><depth>3</depth></size>
<object><name>18</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>99</xmax><ymax>199</ymax></bndbox></object>
<object><name>19</name><bndbox><xmin>30</xmin><ymin>40</ymin><xmax>79</xmax><ymax>149</ymax></bndbox></object>
<object><name>20</name><bndbox><xmin>200</xmin><ymin>0</ymin><xmax>299</xmax><ymax>99</ymax></bndbox></object>
<object><name>20</name><bndbox><xmin>300</xmin><ymin>0</ymin><xmax>399</xmax><ymax>99</ymax></bndbox></object>
<object><name>21</name><scene>1</scene></object>
</annotation>"""


def write_flickr(root):
    os.makedirs(root / "Sentences")
    os.makedirs(root / "Annotations")
    (root / "Sentences" / "1000.txt").write_text(SENTENCES)
    (root / "Annotations" / "1000.xml").write_text(ANNOTATION)
    (root / "test.txt").write_text("1000\n")


def test_parse_sentence_spans():
    caption, ents = parse_sentence(SENTENCES.splitlines()[0])
    assert caption.startswith("A child in a pink dress is climbing up a set of stairs")
    assert [e["phrase"] for e in ents] == ["A child", "a pink dress", "a set of stairs", "an entry way"]
    for e in ents:
        a, b = e["span"]
        assert caption[a:b] == e["phrase"]
    assert ents[0]["type"] == "people" and ents[0]["id"] == "18"


def test_flickr30k_fixture(tmp_path):
    write_flickr(tmp_path)
    samples = load_flickr30k(str(tmp_path), "test")
    assert len(samples) == 2
    s = samples[0]
    assert s["phrases"] == ["A child", "a pink dress", "a set of stairs"]  # the scene entity has no box
    assert torch.equal(s["gt_boxes"][0], torch.tensor([[10.0, 20.0, 100.0, 200.0]]))
    assert s["gt_boxes"][2].shape == (2, 4)  # one entity, two boxes
    assert s["num_objects"] == 4
    assert s["image"].endswith(os.path.join("flickr30k-images", "1000.jpg"))
    assert samples[1]["phrases"] == ["A little girl", "pink", "the stairs"]


def test_flickr30k_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="train.txt"):
        load_flickr30k(str(tmp_path), "train")
    write_flickr(tmp_path)
    os.remove(tmp_path / "Annotations" / "1000.xml")
    with pytest.raises(FileNotFoundError, match="1000.xml"):
        load_flickr30k(str(tmp_path), "test")


def write_refcoco(root):
    os.makedirs(root / "refcoco")
    refs = [dict(ref_id=0, ann_id=7, image_id=1, split="val", category_id=1, file_name="a_1_0.jpg",
                 sentences=[dict(sent="man on the left", tokens=["man", "on", "the", "left"]), dict(sent="left guy")]),
            dict(ref_id=1, ann_id=8, image_id=1, split="train", sentences=[dict(sent="woman")])]
    with open(root / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    inst = dict(images=[dict(id=1, file_name="COCO_train2014_000000000001.jpg", height=480, width=640)],
                annotations=[dict(id=7, image_id=1, bbox=[10, 20, 30, 40], category_id=1),
                             dict(id=8, image_id=1, bbox=[100, 100, 50, 50], category_id=1),
                             dict(id=9, image_id=1, bbox=[0, 0, 5, 5], category_id=2)],
                categories=[dict(id=1, name="person"), dict(id=2, name="cup")])
    (root / "refcoco" / "instances.json").write_text(json.dumps(inst))


def test_refcoco_fixture(tmp_path):
    write_refcoco(tmp_path)
    samples = load_refcoco(str(tmp_path), "refcoco", "val")
    assert [s["caption"] for s in samples] == ["man on the left", "left guy"]
    s = samples[0]
    assert s["phrases"] == ["man on the left"] and s["spans"] == [(0, 15)]
    assert torch.equal(s["gt_boxes"][0], torch.tensor([[10.0, 20.0, 40.0, 60.0]]))
    assert s["num_objects"] == 3
    assert s["image"].endswith("COCO_train2014_000000000001.jpg")
    assert len(load_refcoco(str(tmp_path), "refcoco", "train")) == 1


def test_refcoco_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"refs\(unc\)\.p"):
        load_refcoco(str(tmp_path), "refcoco", "val")
    write_refcoco(tmp_path)
    os.remove(tmp_path / "refcoco" / "instances.json")
    with pytest.raises(FileNotFoundError, match="instances.json"):
        load_refcoco(str(tmp_path), "refcoco", "val")
