"""Referring expressions and cues: the synthetic grammar's decomposition and the JSONL cue files."""
import json

import numpy as np
import pytest

from dapo_fast.data.cues import CueFileError, fit_cues, load_cues, normalise, synthetic_references
from dapo_fast.data.synthetic import SyntheticConfig, generate_sample


def test_synthetic_references_one_per_entity():
    caption = "a red circle left of a blue square above a green ring"
    phrases = ["red circle", "blue square", "green ring"]
    spans = [(2, 12), (23, 34), (43, 53)]
    assert [caption[a:b] for a, b in spans] == phrases
    refs = synthetic_references(caption, phrases, spans)
    assert refs == [
        ("a red circle left of a blue square", ["circle", "red", "left of a blue square"]),
        ("a blue square right of a red circle", ["square", "blue", "right of a red circle"]),
        ("a green ring below a blue square", ["ring", "green", "below a blue square"]),
    ]
    assert synthetic_references("a red circle", ["red circle"], [(2, 12)]) == [
        ("a red circle", ["circle", "red", "red circle"])]
    # a one-word phrase is its own attribute; an unknown relation is read as symmetric
    assert synthetic_references("a ring beside a cross", ["ring", "cross"], [(2, 6), (16, 21)])[1] == (
        "a cross beside a ring", ["cross", "cross", "beside a ring"])


def test_every_generated_caption_decomposes(seed):
    rng = np.random.default_rng(seed)
    for _ in range(30):
        s = generate_sample(rng, SyntheticConfig(image_size=64))
        refs = synthetic_references(s["caption"], s["phrases"], s["spans"])
        assert len(refs) == len(s["phrases"])
        for (expression, cues), phrase in zip(refs, s["phrases"]):
            assert expression.startswith(f"a {phrase}") and len(cues) == 3
            assert all(c and c in expression for c in cues)


def test_fit_cues_pads_with_the_last_and_truncates():
    assert fit_cues(["a", "b"], 4) == ["a", "b", "b", "b"]
    assert fit_cues(["a", "b", "c"], 2) == ["a", "b"]
    with pytest.raises(ValueError, match="at least one cue"):
        fit_cues([], 3)


def test_load_cues(tmp_path):
    path = tmp_path / "cues.jsonl"
    lines = [json.dumps({"expression": "Man in  red shirt", "cues": ["a man", "red shirt"]}),
             "",
             json.dumps({"expression": "the dog on the left", "cues": ["a dog", "on the left"], "image_id": 7}),
             json.dumps({"expression": "man in red shirt", "cues": ["a man", "red shirt"]})]  # same again: fine
    path.write_text("\n".join(lines) + "\n")
    table = load_cues(str(path))
    assert table == {"man in red shirt": ["a man", "red shirt"], "the dog on the left": ["a dog", "on the left"]}
    assert normalise("  Man in\tred   shirt ") == "man in red shirt"


@pytest.mark.parametrize("line, match", [
    ("{not json", r"line 2: not valid JSON"),
    ("[1, 2]", r"line 2: expected a JSON object"),
    ('{"expression": "x", "cues": ["a"], "score": 1}', r"line 2: unknown key\(s\) \['score'\]"),
    ('{"expression": "", "cues": ["a"]}', r"line 2: 'expression' must be a non-empty string"),
    ('{"expression": "x", "cues": []}', r"line 2: 'cues' must be a list of 1 to 16"),
    ('{"expression": "x", "cues": "a b"}', r"line 2: 'cues' must be a list"),
    ('{"expression": "x", "cues": ["a", 3]}', r"line 2: cues\[1\] must be a non-empty string"),
    ('{"expression": "A  dog", "cues": ["other"]}', r"line 2: expression 'A  dog' already has different cues \(line 1\)"),
])
def test_bad_cue_lines_are_named_with_their_number(tmp_path, line, match):
    path = tmp_path / "cues.jsonl"
    path.write_text(json.dumps({"expression": "a dog", "cues": ["a dog"]}) + "\n" + line + "\n")
    with pytest.raises(CueFileError, match=match):
        load_cues(str(path))


def test_missing_and_oversized_cue_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        load_cues(str(tmp_path / "nope.jsonl"))
    path = tmp_path / "big.jsonl"
    path.write_text(json.dumps({"expression": "x" * 70000, "cues": ["a"]}) + "\n")
    with pytest.raises(CueFileError, match="line 1: line longer than"):
        load_cues(str(path))
