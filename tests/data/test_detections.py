"""Detector boxes in the documented JSONL format: a tiny fixture file parsed, bad files named, the
batch form in the model's input frame."""
import json

import pytest
import torch

from dapo_fast.data.detections import collate_proposals, load_detections, proposals_of

FIXTURE = [
    {"image_id": "1000", "boxes": [[10, 20, 99, 199], [30, 40, 79, 149], [200, 0, 299, 99]],
     "scores": [0.5, 0.9, 0.7], "labels": ["person", "shirt", "stairs"]},
    {"image_id": 2000, "boxes": [[0, 0, 50.5, 40]]},
]


def write(path, records, extra_lines=()):
    path.write_text("\n".join([json.dumps(r) for r in records] + list(extra_lines)) + "\n")
    return str(path)


def test_fixture_parses_to_boxes_and_scores(tmp_path):
    det = load_detections(write(tmp_path / "det.jsonl", FIXTURE, [""]))  # a blank line is skipped
    assert sorted(det) == ["1000", "2000"]  # ids are strings, as the datasets' image_id
    boxes, scores = det["1000"]
    assert boxes.dtype == torch.float32 and boxes.shape == (3, 4)
    assert boxes[1].tolist() == [30, 40, 79, 149]
    assert scores.tolist() == pytest.approx([0.5, 0.9, 0.7])
    boxes, scores = det["2000"]
    assert boxes.tolist() == [[0, 0, 50.5, 40]] and scores is None


def test_max_proposals_keeps_the_most_confident_boxes(tmp_path):
    det = load_detections(write(tmp_path / "det.jsonl", FIXTURE))
    sample = {"image_id": "1000", "proposals": None}
    assert proposals_of(sample, det, max_proposals=2).tolist() == [[30, 40, 79, 149], [200, 0, 299, 99]]
    assert proposals_of(sample, det).shape == (3, 4)
    own = {"image_id": "x", "proposals": torch.tensor([[1.0, 2, 3, 4]])}  # the synthetic benchmark's own boxes
    assert proposals_of(own, None).tolist() == [[1, 2, 3, 4]]
    with pytest.raises(KeyError, match="no detector boxes for image_id '3000'"):
        proposals_of({"image_id": "3000", "proposals": None}, det)
    with pytest.raises(ValueError, match="give a detections file"):
        proposals_of({"image_id": "3000", "proposals": None}, None)


@pytest.mark.parametrize("line, match", [
    ("{not json", r"line 2: not valid JSON"),
    (json.dumps({"boxes": []}), r"line 2: .*'image_id' and 'boxes'"),
    (json.dumps({"image_id": "1000", "boxes": []}), r"line 2: image_id '1000' appears twice"),
    (json.dumps({"image_id": "9", "boxes": [[1, 2, 3]]}), r"line 2: 'boxes' must be a list"),
    (json.dumps({"image_id": "9", "boxes": [[1, 2, "a", 4]]}), r"line 2: box coordinates must be finite"),
    ('{"image_id": "9", "boxes": [[1, 2, NaN, 4]]}', r"line 2: box coordinates must be finite"),
    (json.dumps({"image_id": "9", "boxes": [[5, 2, 3, 4]]}), r"line 2: boxes must have x1 <= x2"),
    (json.dumps({"image_id": "9", "boxes": [[1, 2, 3, 4]], "scores": [1, 2]}), r"line 2: 'scores' must be 1 numbers"),
])
def test_bad_lines_name_file_and_line(tmp_path, line, match):
    path = write(tmp_path / "det.jsonl", FIXTURE[:1], [line])
    with pytest.raises(ValueError, match=match):
        load_detections(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_detections(str(tmp_path / "nope.jsonl"))


def test_collate_scales_to_the_input_frame_and_pads_with_own_boxes():
    samples = [{"image_id": "a", "proposals": torch.tensor([[0.0, 0, 100, 50], [50, 25, 100, 50], [10, 10, 20, 20]])},
               {"image_id": "b", "proposals": torch.tensor([[0.0, 0, 20, 40]])}]
    sizes = torch.tensor([[50, 100], [40, 20]])  # (height, width)
    boxes, valid = collate_proposals(samples, sizes, 64)
    assert boxes.shape == (2, 3, 4)
    assert boxes[0, 0].tolist() == [0, 0, 64, 64] and boxes[0, 1].tolist() == [32, 32, 64, 64]
    assert boxes[1].tolist() == [[0, 0, 64, 64]] * 3  # its one box, repeated, the copies marked invalid
    assert valid.tolist() == [[True, True, True], [True, False, False]]
    with pytest.raises(ValueError, match="image 'c' has no proposals"):
        collate_proposals([{"image_id": "c", "proposals": torch.zeros(0, 4)}], sizes[:1], 64)
