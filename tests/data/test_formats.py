"""Tiny fixture files in the Flickr30K Entities and RefCOCO formats, parsed into sample dicts; hostile and
malformed dataset files (and synthetic caches) give a clean error naming the file, and never run code."""
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dapo_fast
from dapo_fast.data import build_splits
from dapo_fast.data.flickr30k import load_flickr30k, parse_sentence
from dapo_fast.data.refcoco import load_refcoco
from dapo_fast.data.synthetic import SyntheticConfig, generate_benchmark, generate_split, load_split, split_path
from dapo_fast.safe_io import FileFormatError
from tests.hostile import planted_pickle, planted_torch_file, unpickling_runs_code

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dapo_fast.__file__)))

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


def test_parse_sentence_spans_survive_whitespace_runs():
    caption, ents = parse_sentence(" a  [/EN#1/x  b   c ]d\t[/EN#2/y e][/EN#3/z  ]  f  ")
    assert caption == "a b cd e f"
    assert [(e["phrase"], caption[slice(*e["span"])]) for e in ents] == [("b c", "b c"), ("e", "e")]


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


# ---------------------------------------------------------------------------------- hostile files
def test_refcoco_planted_pickle_runs_nothing(tmp_path):
    write_refcoco(tmp_path)
    marker = tmp_path / "pwned"
    for protocol in (0, 2, 5):  # the refer toolkit's files are protocol-2 pickles from Python 2
        data = planted_pickle(marker, lambda p: [dict(ref_id=0, split="val", sentences=[p])], protocol=protocol)
        assert unpickling_runs_code(data, marker)  # the file is live: a plain pickle.load creates marker
        (tmp_path / "refcoco" / "refs(unc).p").write_bytes(data)
        with pytest.raises(FileFormatError, match=r"refs\(unc\)\.p was refused: it holds a pickled 'io\.open'"):
            load_refcoco(str(tmp_path), "refcoco", "val")
        assert not marker.exists()


def test_refcoco_python2_protocol_pickle_with_sets_and_tuples_loads(tmp_path):
    write_refcoco(tmp_path)
    refs = [dict(ref_id=0, ann_id=7, image_id=1, split="val", tags={"a", "b"}, box=(1.0, 2.0),
                 sentences=[dict(sent="man on the left")])]
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f, protocol=2)
    assert [s["caption"] for s in load_refcoco(str(tmp_path), "refcoco", "val")] == ["man on the left"]


@pytest.mark.parametrize("change, match", [
    (lambda inst, refs: refs[0].pop("split"), r"refs\(unc\)\.p ref \[0\] needs 'split' \(str\)"),
    (lambda inst, refs: refs[0].update(ann_id=99), r"ref \[0\] points to annotation 99, missing from .*instances.json"),
    (lambda inst, refs: refs[0].update(image_id=[1]), r"ref \[0\] needs 'image_id' \(int/str\)"),
    (lambda inst, refs: refs[0]["sentences"].append({"sent": 3}), r"ref \[0\] sentences\[2\] needs 'sent' \(str\)"),
    (lambda inst, refs: inst["annotations"][0].update(bbox=[1, 2, 3]), r"instances.json annotations\[0\] needs 'bbox'"),
    (lambda inst, refs: inst["annotations"][0].update(bbox=[1, 2, 10**400, 4]), r"annotations\[0\] needs 'bbox'"),
    (lambda inst, refs: inst["annotations"][0].update(bbox=[0, 0, -5, 4]), r"annotations\[0\] needs 'bbox'"),
    (lambda inst, refs: inst.pop("images"), r"instances.json needs 'images' \(list\)"),
    (lambda inst, refs: inst["images"][0].update(file_name="../../../etc/passwd"),
     r"RefCOCO image 1 in .*instances.json: '\.\./\.\./\.\./etc/passwd' leads outside"),
    (lambda inst, refs: inst["images"][0].update(file_name="/etc/passwd"),
     r"RefCOCO image 1 in .*instances.json: '/etc/passwd' is not a relative path"),
])
def test_refcoco_malformed_records_name_the_file_and_record(tmp_path, change, match):
    write_refcoco(tmp_path)
    with open(tmp_path / "refcoco" / "refs(unc).p", "rb") as f:
        refs = pickle.load(f)  # our own fixture, written just above
    inst = json.loads((tmp_path / "refcoco" / "instances.json").read_text())
    change(inst, refs)
    with open(tmp_path / "refcoco" / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    (tmp_path / "refcoco" / "instances.json").write_text(json.dumps(inst))
    with pytest.raises(FileFormatError, match=match):
        load_refcoco(str(tmp_path), "refcoco", "val")


def test_refcoco_broken_json_and_pickle_name_the_file(tmp_path):
    write_refcoco(tmp_path)
    (tmp_path / "refcoco" / "instances.json").write_text('{"images": [')
    with pytest.raises(FileFormatError, match=r"instances.json is not valid JSON"):
        load_refcoco(str(tmp_path), "refcoco", "val")
    (tmp_path / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([1, 2, 3])[:-4])
    with pytest.raises(FileFormatError, match=r"refs\(unc\)\.p is not a readable pickle"):
        load_refcoco(str(tmp_path), "refcoco", "val")


@pytest.mark.parametrize("image_id", ["../../outside", "../Annotations/1000", "/etc/passwd", "a\x00b"])
def test_flickr30k_ids_that_leave_their_folder_are_refused(tmp_path, image_id):
    write_flickr(tmp_path)
    (tmp_path / "outside.txt").write_text(SENTENCES)
    (tmp_path / "test.txt").write_text(f"1000\n{image_id}\n")
    with pytest.raises(FileFormatError, match=rf"Flickr30K image id {re.escape(repr(image_id))} in .*test.txt"):
        load_flickr30k(str(tmp_path), "test")


@pytest.mark.parametrize("xml, match", [
    ("<annotation><object><name>18</name><bndbox><xmin>1</xmin>", "is not well-formed XML"),
    (ANNOTATION.replace("<xmin>10</xmin>", "<xmin>ten</xmin>"), r"<bndbox> needs a numeric <xmin>, got 'ten'"),
    (ANNOTATION.replace("<ymax>199</ymax>", ""), r"<bndbox> needs a numeric <ymax>, got None"),
    (ANNOTATION.replace("<xmin>10</xmin>", "<xmin>nan</xmin>"), r"<xmin> is nan"),
    (ANNOTATION.replace("<height>375</height>", "<height>3.5</height>"), r"<size> needs a numeric <height>"),
    (ANNOTATION.replace("<name>19</name>", "<name> </name>"), r"an <object> has an empty <name>"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotation>&x;</annotation>', "declares a DTD"),
])
def test_flickr30k_malformed_annotation_names_the_file(tmp_path, xml, match):
    write_flickr(tmp_path)
    (tmp_path / "Annotations" / "1000.xml").write_text(xml)
    with pytest.raises(FileFormatError, match=rf"Flickr30K annotation .*1000\.xml.*{match}"):
        load_flickr30k(str(tmp_path), "test")


def test_flickr30k_sentences_that_are_not_utf8_name_the_file(tmp_path):
    write_flickr(tmp_path)
    (tmp_path / "Sentences" / "1000.txt").write_bytes(b"[/EN#18/people A \xff child]\n")
    with pytest.raises(FileFormatError, match=r"1000\.txt is not UTF-8"):
        load_flickr30k(str(tmp_path), "test")


# ---------------------------------------------------------------------------------- synthetic cache
def cache_file(root, name):
    """Where the default preset's split ``name`` is cached under ``root`` (its folder made)."""
    path = Path(split_path(str(root), name))
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_synthetic_cache_is_a_weights_only_file(tmp_path):
    generate_benchmark(str(tmp_path), num_train=3, num_val=2, num_test=2, seed=1)
    raw = torch.load(cache_file(tmp_path, "test"), weights_only=True)
    assert raw["spec"]["n"] == 2 and isinstance(raw["split"]["cfg"], dict)
    split = load_split(str(tmp_path), "test")
    assert split.cfg == SyntheticConfig() and torch.equal(split.images, generate_split("test", 2, seed=1).images)


@pytest.mark.parametrize("make", [planted_torch_file, lambda m: planted_pickle(m, protocol=2)])
def test_synthetic_cache_planted_pickle_runs_nothing(tmp_path, make):
    marker = tmp_path / "pwned"
    data = make(marker)
    assert unpickling_runs_code(data, marker)
    (cache_file(tmp_path, "test")).write_bytes(data)
    with pytest.raises(FileFormatError, match=r"synthetic split file .*test\.pt was refused: it holds a pickled 'io\.open'"):
        load_split(str(tmp_path), "test")
    assert not marker.exists()


def test_a_stale_planted_cache_in_the_data_root_is_regenerated_without_running(tmp_path):
    from dapo_fast.train.config import DataConfig

    marker = tmp_path / "pwned"
    (cache_file(tmp_path, "train")).write_bytes(planted_torch_file(marker, lambda p: {"spec": p}))
    splits = build_splits(DataConfig(root=str(tmp_path), num_train=4, num_val=2, num_test=3))
    assert not marker.exists() and len(splits["train"]) == 4
    assert torch.equal(splits["train"].images, generate_split("train", 4, seed=0).images)


def test_a_malformed_synthetic_cache_is_named(tmp_path):
    torch.save({"spec": {}, "split": {"images": torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "captions": ["a"]}},
               cache_file(tmp_path, "val"))
    with pytest.raises(FileFormatError, match=r"val\.pt is malformed \('captions' is not a list of 2\)"):
        load_split(str(tmp_path), "val")


_GENERATE = """
import sys
from dapo_fast.data.synthetic import generate_benchmark
generate_benchmark(sys.argv[1], num_train=40, num_val=2, num_test=2, seed=int(sys.argv[2]))
"""


def test_two_processes_generating_one_data_root_do_not_collide(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _GENERATE, str(tmp_path), "5"], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert sorted(os.listdir(tmp_path / "default")) == ["test.pt", "train.pt", "val.pt"]
    assert torch.equal(load_split(str(tmp_path), "train").images, generate_split("train", 40, seed=5).images)


def test_jsonl_lines_that_are_too_long_or_not_utf8_are_named(tmp_path):
    from dapo_fast.safe_io import jsonl_objects

    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"a": 1}\n\n{"b": "' + b"x" * 100 + b'"}\n')
    with pytest.raises(FileFormatError, match=r"records file .*records.jsonl line 3: line longer than 50"):
        list(jsonl_objects(str(path), "records file", max_line_chars=50))
    assert list(jsonl_objects(str(path), "records file")) == [(1, {"a": 1}), (3, {"b": "x" * 100})]
    path.write_bytes(b'{"a": 1}\n{"b": "\xff"}\n')
    with pytest.raises(FileFormatError, match=r"line 2: not UTF-8 text"):
        list(jsonl_objects(str(path), "records file"))
    with pytest.raises(FileNotFoundError, match="records file not found"):
        list(jsonl_objects(str(tmp_path / "missing.jsonl"), "records file"))


def _generated_shard(root, record):
    from safetensors.torch import save_file

    from dapo_fast.data.generated import FORMAT

    os.makedirs(root / "shard_00000", exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    save_file({"0000000": torch.zeros(1, 4, 4)}, str(root / "shard_00000" / "maps.safetensors"))
    (root / "shard_00000" / "index.jsonl").write_text(json.dumps(record) + "\n")


GOOD_GENERATED = {"index": 0, "image": "shard_00000/0000000.png", "caption": "a red ring", "entities": ["red ring"],
                  "entity_spans": [[2, 10]]}


@pytest.mark.parametrize("change, match", [
    ({}, None),
    ({"image": "../../etc/passwd"}, "leads outside"),
    ({"image": "/etc/passwd"}, "not a relative path"),
    ({"index": 1}, r"maps under '0000001'"),
    ({"index": -1}, "'index' must be an int"),
    ({"entities": ["red ring", "blue ring"], "entity_spans": [[2, 10], [0, 1]]}, r"needs \[2, h, w\] maps"),
    ({"entity_spans": [[2]]}, "'entity_spans' must be 1"),
])
def test_generated_index_lines_are_checked(tmp_path, change, match):
    from dapo_fast.data.generated import GeneratedSet

    _generated_shard(tmp_path, dict(GOOD_GENERATED, **change))
    if match is None:
        assert GeneratedSet(str(tmp_path)).phrases == [["red ring"]]
    else:
        with pytest.raises(FileFormatError, match=f"index.jsonl line 1: .*{match}"):
            GeneratedSet(str(tmp_path))
