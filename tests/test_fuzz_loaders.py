"""Property-based fuzzing of every loader that reads a user's file.

Random and hostile bytes and structures go to the checkpoint loader (``load_checkpoint``, eval's
``load_trained``, resume's restore), the config loader (YAML files and ``--set`` values), the
RefCOCO and Flickr30K parsers and the synthetic cache reader. Every case either loads or raises the
loader's documented clean error (CheckpointError, ConfigError, FileFormatError: a ValueError naming
the file; FileNotFoundError for a named file that is missing); any other exception fails the test,
and a case still running after ``HANG_SECONDS`` fails it as a hang. Byte flips of a checkpoint must
never load as a different checkpoint. The counts per loader (cases, loaded, clean errors, crashes)
are printed in the summary at the end of the test run.
"""
import copy
import io
import json
import os
import pickle

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dapo_fast.data.flickr30k import load_flickr30k, parse_annotation, parse_sentence
from dapo_fast.data.refcoco import load_refcoco
from dapo_fast.data.synthetic import generate_benchmark, load_split
from dapo_fast.safe_io import FileFormatError
from dapo_fast.train import loop
from dapo_fast.train.checkpoint import CheckpointError, load_checkpoint, payload_digest, save_checkpoint
from dapo_fast.train.config import ConfigError, config_from_dict, config_to_dict, load_config
from tests._fuzz import HANG_SECONDS, count_table, fuzz, hang_guard
from tests.train.tiny import tiny_config

COUNTS = count_table("loader", ("cases", "loaded", "clean errors", "crashes"))


def case(loader: str, clean, fn):
    """Run one case of ``loader``: count it as loaded, a clean error (``clean``) or a crash (re-raised)."""
    COUNTS[loader]["cases"] += 1
    try:
        with hang_guard(HANG_SECONDS):
            result = fn()
    except clean:
        COUNTS[loader]["clean errors"] += 1
        return None
    except BaseException:
        COUNTS[loader]["crashes"] += 1
        raise
    COUNTS[loader]["loaded"] += 1
    return result


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


# ---------------------------------------------------------------------------------- plain values
def _tensor(shape, dtype):
    return torch.arange(int(torch.tensor(shape).prod()) if shape else 1).reshape(shape).to(dtype)


TENSORS = st.builds(_tensor, st.lists(st.integers(0, 3), max_size=3),
                    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool, torch.uint8]))
SCALARS = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=10))
PLAIN = st.recursive(SCALARS | TENSORS, lambda kids: (st.lists(kids, max_size=4) | st.tuples(kids, kids)
                                                      | st.dictionaries(st.text(max_size=6) | st.integers(), kids,
                                                                        max_size=4)), max_leaves=12)
DELETE = object()


def _paths(tree, prefix=(), depth=3):
    """Key paths into nested dicts, up to ``depth`` deep."""
    out = []
    if isinstance(tree, dict) and depth:
        for key, value in tree.items():
            out.append(prefix + (key,))
            out += _paths(value, prefix + (key,), depth - 1)
    return out


def _replace(tree, path, value):
    tree = copy.deepcopy(tree)
    node = tree
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return tree


# ---------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def checkpoint(work):
    """A tiny wwbl run's checkpoint after 2 steps: (payload, file bytes, config)."""
    cfg = tiny_config(work / "ckpt", train=dict(max_steps=2))
    out = loop.train(cfg, log=lambda *_: None)
    with open(out["checkpoint"], "rb") as f:
        data = f.read()
    return load_checkpoint(out["checkpoint"]), data, cfg


@fuzz(150)
@given(data=st.binary(max_size=3000) | st.binary(max_size=3000).map(lambda b: b"PK\x03\x04" + b))
def test_checkpoint_random_bytes(work, data):
    (work / "random.pt").write_bytes(data)
    case("checkpoint: random bytes", CheckpointError, lambda: load_checkpoint(str(work / "random.pt")))


@fuzz(200)
@given(edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.none() | st.floats(0, 1))
def test_checkpoint_flipped_or_truncated_never_loads_different(work, checkpoint, edits, cut):
    payload, data, _ = checkpoint
    raw = bytearray(data)
    for where, xor in edits:
        raw[int(where * len(raw))] ^= xor
    if cut is not None:
        raw = raw[:int(cut * len(raw))]
    (work / "flipped.pt").write_bytes(bytes(raw))
    back = case("checkpoint: flipped/truncated bytes", CheckpointError,
                lambda: load_checkpoint(str(work / "flipped.pt")))
    if back is not None:  # the flips hit bytes the payload does not depend on
        assert payload_digest(back) == payload_digest(payload)


ENVELOPE_KEYS = st.sampled_from(["format", "checksum", "model", "step", "config", "tokenizer", "rng", "x"])


@fuzz(120)
@given(tree=st.dictionaries(ENVELOPE_KEYS, PLAIN, max_size=6), tag=st.booleans())
def test_checkpoint_random_structures(work, tree, tag):
    if tag:
        tree["format"] = "dapo_fast.checkpoint/2"
    torch.save(tree, work / "structure.pt")
    case("checkpoint: random structures", CheckpointError, lambda: load_checkpoint(str(work / "structure.pt")))


@fuzz(60)
@given(data=st.data())
def test_eval_load_of_checksummed_hostile_payloads(work, checkpoint, data):
    payload, _, _ = checkpoint
    path = data.draw(st.sampled_from(_paths(payload)))
    hostile = _replace(payload, path, data.draw(PLAIN | st.just(DELETE)))
    save_checkpoint(str(work / "hostile.pt"), hostile)  # a valid checksum: the author recomputed it
    case("checkpoint: eval load_trained (hostile payload)", CheckpointError,
         lambda: loop.load_trained(str(work / "hostile.pt")))


@fuzz(40)
@given(data=st.data())
def test_resume_restore_of_checksummed_hostile_payloads(work, checkpoint, data):
    payload, _, cfg = checkpoint
    sections = ("optimizer", "scheduler", "curriculum", "rng", "method", "tokenizer", "model")
    path = data.draw(st.sampled_from([p for p in _paths(payload, depth=4) if p[0] in sections]))
    hostile = _replace(payload, path, data.draw(PLAIN | st.just(DELETE)))
    save_checkpoint(str(work / "hostile_resume.pt"), hostile)
    resume_cfg = copy.deepcopy(cfg)
    resume_cfg.train.out_dir = str(work / "resumed")
    case("checkpoint: train --resume restore (hostile payload)", CheckpointError,
         lambda: loop.Trainer(resume_cfg, resume=str(work / "hostile_resume.pt"), log=lambda *_: None))


# ---------------------------------------------------------------------------------- config
KNOWN = config_to_dict(config_from_dict({}))
KNOWN_KEYS = [f"{section}.{key}" for section, values in KNOWN.items() if isinstance(values, dict) for key in values]
YAML_SNIPPETS = st.sampled_from(["!!python/object:os.system", "!!python/object/apply:os.system ['true']", "[1", "{a:",
                                 "&a [1, *a]", "*nope", "!!binary AAAA", "!!set {a, b}", ".nan", "-.inf", "1e999",
                                 "0x10", "~", "'", '"\\x', "- a", "? [1, 2]\n: 3", "!!timestamp 2001-12-14", "%YAML 1.1"])


@fuzz(200)
@given(text=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.decode("latin-1")))
def test_config_random_yaml_text(work, text):
    (work / "random.yaml").write_text(text, encoding="utf-8", errors="surrogatepass")
    case("config: random YAML text", ConfigError, lambda: load_config(str(work / "random.yaml")))


@fuzz(200)
@given(data=st.data())
def test_config_random_structures(work, data):
    sections = {}
    for dotted in data.draw(st.lists(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), max_size=6)):
        section, _, key = dotted.partition(".")
        value = data.draw(PLAIN.filter(lambda v: not isinstance(v, torch.Tensor)) | st.sampled_from([True, 0, -1, 2**64]))
        if key:
            node = sections.setdefault(section, {})
            if isinstance(node, dict):
                node[key] = value
        else:
            sections[section] = value
    try:
        text = yaml.safe_dump(sections)
    except yaml.YAMLError:  # tuples and tensors have no safe YAML form: write them as text
        text = repr(sections)
    (work / "structure.yaml").write_text(text)
    case("config: random structures", ConfigError, lambda: load_config(str(work / "structure.yaml")))


@fuzz(250)
@given(overrides=st.lists(st.tuples(st.sampled_from(KNOWN_KEYS + ["method", "x", "", "train.", ".a", "a..b"])
                                    | st.text(max_size=10),
                                    YAML_SNIPPETS | st.text(max_size=20), st.booleans()), max_size=4))
def test_config_random_set_values(work, overrides):
    (work / "base.yaml").write_text("train:\n  batch_size: 16\n")
    items = [f"{key}={value}" if eq else f"{key}{value}" for key, value, eq in overrides]
    case("config: random --set values", ConfigError, lambda: load_config(str(work / "base.yaml"), items))


# ---------------------------------------------------------------------------------- RefCOCO
IDS = st.integers(0, 3) | st.text(max_size=3)
REF = st.fixed_dictionaries({"ref_id": IDS, "ann_id": IDS, "image_id": IDS, "split": st.sampled_from(["val", "train"]),
                             "sentences": st.lists(st.fixed_dictionaries({"sent": st.text(max_size=8)}), max_size=3)})
INSTANCES = st.fixed_dictionaries({
    "images": st.lists(st.fixed_dictionaries({"id": IDS, "file_name": st.text(max_size=12)}), max_size=3),
    "annotations": st.lists(st.fixed_dictionaries({"id": IDS, "image_id": IDS, "bbox": st.lists(
        st.integers(-5, 10**400) | st.floats(), max_size=5)}), max_size=3)})


def _json_safe(value):
    return json.loads(json.dumps(value, default=str))


def _refcoco_case(root, refs_bytes: bytes, instances_text: str, loader: str):
    os.makedirs(root / "refcoco", exist_ok=True)
    (root / "refcoco" / "refs(unc).p").write_bytes(refs_bytes)
    (root / "refcoco" / "instances.json").write_text(instances_text, encoding="utf-8", errors="surrogatepass")
    case(loader, FileFormatError, lambda: load_refcoco(str(root), "refcoco", "val"))


@fuzz(150)
@given(refs=st.lists(REF | PLAIN, max_size=3) | PLAIN, protocol=st.integers(0, 5), instances=INSTANCES | PLAIN,
       junk=st.none() | st.binary(max_size=200))
def test_refcoco_random_files(work, refs, protocol, instances, junk):
    refs_bytes = junk if junk is not None else pickle.dumps(refs, protocol=protocol)
    _refcoco_case(work, refs_bytes, json.dumps(_json_safe(instances)), "RefCOCO: random refs/instances")


@fuzz(150)
@given(module=st.sampled_from(["os", "posix", "subprocess", "builtins", "__builtin__", "io", "shutil", "collections",
                               "copyreg", "torch", "numpy", "_codecs", "sys"]),
       name=st.sampled_from(["system", "open", "eval", "exec", "getattr", "__import__", "set", "frozenset", "complex",
                             "OrderedDict", "rmtree", "_reconstructor", "encode", "exit"]),
       opcode=st.sampled_from(["global", "inst", "stack_global"]), text=st.text(max_size=200))
def test_refcoco_hostile_pickles_and_json(work, module, name, opcode, text):
    # each program calls module.name() with no arguments, so even a wrongly admitted callable cannot do harm
    program = {"global": b"c%s\n%s\n)R." % (module.encode(), name.encode()),
               "inst": b"(i%s\n%s\n." % (module.encode(), name.encode()),
               "stack_global": b"\x80\x04\x8c%c%s\x8c%c%s\x93)R." % (len(module), module.encode(), len(name),
                                                                    name.encode())}[opcode]
    _refcoco_case(work, program, text, "RefCOCO: hostile pickles, random JSON text")


# ---------------------------------------------------------------------------------- Flickr30K
XML_TEXT = st.sampled_from(["10", "-3", "1e9", "nan", "inf", "", " 7 ", "ten", "0x1", "1.5"]) | st.text(max_size=4)
XML_BOX = st.lists(st.sampled_from(["xmin", "ymin", "xmax", "ymax", "junk"]), max_size=5).flatmap(
    lambda tags: st.tuples(*[st.tuples(st.just(t), XML_TEXT) for t in tags]))
XML_OBJECT = st.tuples(st.lists(XML_TEXT, max_size=2), st.none() | XML_BOX)


def _annotation(size, objects, tail):
    size_xml = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height></size>"
    objs = "".join("<object>" + "".join(f"<name>{n}</name>" for n in names)
                   + ("" if box is None else "<bndbox>" + "".join(f"<{t}>{v}</{t}>" for t, v in box) + "</bndbox>")
                   + "</object>" for names, box in objects)
    return f"<annotation>{size_xml}{objs}</annotation>{tail}"


def _escape(text):
    return text.replace("&", "&amp;").replace("<", "&lt;")


@fuzz(200)
@given(size=st.none() | st.tuples(XML_TEXT, XML_TEXT), objects=st.lists(XML_OBJECT, max_size=3),
       tail=st.sampled_from(["", "<", "</x>", "<!DOCTYPE a>", "&bad;"]), junk=st.none() | st.binary(max_size=300))
def test_flickr30k_random_annotations(work, size, objects, tail, junk):
    os.makedirs(work / "flickr", exist_ok=True)
    if junk is not None:
        (work / "flickr" / "a.xml").write_bytes(junk)
    else:
        size = None if size is None else tuple(_escape(v) for v in size)
        objects = [([_escape(n) for n in names], None if box is None else [(t, _escape(v)) for t, v in box])
                   for names, box in objects]
        (work / "flickr" / "a.xml").write_text(_annotation(size, objects, tail), encoding="utf-8",
                                               errors="surrogatepass")
    case("Flickr30K: random annotations", FileFormatError, lambda: parse_annotation(str(work / "flickr" / "a.xml")))


ENTITY = st.tuples(st.integers(0, 30), st.sampled_from(["people", "other", "notvisual"]), st.text(max_size=8)).map(
    lambda e: f"[/EN#{e[0]}/{e[1]} {e[2]}]")


@fuzz(300)
@given(parts=st.lists(ENTITY | st.text(max_size=8), max_size=6))
def test_flickr30k_sentence_spans_point_at_their_phrases(parts):
    line = "".join(parts)

    def check():
        caption, entities = parse_sentence(line)
        for e in entities:
            assert caption[slice(*e["span"])] == e["phrase"] and e["phrase"]
        return caption

    case("Flickr30K: random sentences (spans)", (), check)


@fuzz(150)
@given(ids=st.lists(st.sampled_from(["1000", "../1000", "../../etc/passwd", "/etc/passwd", "a\x00b", ".", "..",
                                     "Sentences/../1000"]) | st.text(max_size=10), max_size=4),
       sentences=st.lists(ENTITY | st.text(max_size=10), max_size=6), junk=st.none() | st.binary(max_size=100))
def test_flickr30k_random_splits_and_sentences(work, ids, sentences, junk):
    root = work / "flickr_root"
    for sub in ("Sentences", "Annotations"):
        os.makedirs(root / sub, exist_ok=True)
    (root / "Annotations" / "1000.xml").write_text(
        "<annotation><object><name>1</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax>"
        "</bndbox></object></annotation>")
    sentence_file = root / "Sentences" / "1000.txt"
    if junk is not None:
        sentence_file.write_bytes(junk)
    else:
        sentence_file.write_text("".join(sentences) + "\n", encoding="utf-8", errors="surrogatepass")
    (root / "test.txt").write_text("\n".join(ids) + "\n", encoding="utf-8", errors="surrogatepass")
    case("Flickr30K: random split ids and sentences", (FileFormatError, FileNotFoundError),
         lambda: load_flickr30k(str(root), "test"))


# ---------------------------------------------------------------------------------- synthetic cache
@pytest.fixture(scope="module")
def cache(work):
    root = work / "synthetic"
    generate_benchmark(str(root), num_train=2, num_val=2, num_test=2, seed=0)
    raw = torch.load(root / "default" / "val.pt", weights_only=True)
    return root, (root / "default" / "val.pt").read_bytes(), raw


@fuzz(150)
@given(junk=st.binary(max_size=2000), flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True),
                                                               st.integers(1, 255)), max_size=4),
       mode=st.sampled_from(["junk", "flips"]))
def test_synthetic_cache_random_and_flipped_bytes(work, cache, junk, flips, mode):
    _, data, _ = cache
    raw = bytearray(data)
    for where, xor in flips:
        raw[int(where * len(raw))] ^= xor
    os.makedirs(work / "synthetic_bad" / "default", exist_ok=True)
    (work / "synthetic_bad" / "default" / "val.pt").write_bytes(junk if mode == "junk" else bytes(raw))
    case("synthetic cache: random/flipped bytes", FileFormatError, lambda: load_split(str(work / "synthetic_bad"), "val"))


@fuzz(150)
@given(data=st.data())
def test_synthetic_cache_random_structures(work, cache, data):
    _, _, raw = cache
    path = data.draw(st.sampled_from(_paths(raw, depth=3)))
    hostile = _replace(raw, path, data.draw(PLAIN | st.just(DELETE)))
    os.makedirs(work / "synthetic_bad" / "default", exist_ok=True)
    buf = io.BytesIO()
    torch.save(hostile, buf)
    (work / "synthetic_bad" / "default" / "val.pt").write_bytes(buf.getvalue())

    def load():
        split = load_split(str(work / "synthetic_bad"), "val")
        assert len(split) == split.images.shape[0]
        return split

    case("synthetic cache: random structures", FileFormatError, load)



# ---------------------------------------------------------------------------------- JSONL files
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                           lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids,
                                                                                     max_size=4), max_leaves=10)


def _jsonl_lines(keys):
    """Lines of a JSONL file: records with the reader's keys holding random values, random JSON and
    random text (which may be cut JSON, blank, or not UTF-8 once encoded with surrogates replaced)."""
    record = st.dictionaries(st.sampled_from(keys + ["x"]), JSON_VALUES, max_size=len(keys) + 1).map(json.dumps)
    return st.lists(record | JSON_VALUES.map(json.dumps) | st.text(max_size=40), max_size=5)


def _write_lines(path, lines, junk):
    path.write_bytes("\n".join(lines).encode("utf-8", "replace") + junk)


JSONL_JUNK = st.sampled_from([b"", b"\n", b"\xff\xfe\n", b'{"a": 1'])


@fuzz(150)
@given(lines=_jsonl_lines(["caption", "entities"]), junk=JSONL_JUNK)
def test_phrases_file_random_lines(work, lines, junk):
    from dapo_fast.diffusion.generate import GenerationError, read_prompts

    _write_lines(work / "phrases.jsonl", lines, junk)
    case("phrases JSONL: random lines", GenerationError, lambda: read_prompts(str(work / "phrases.jsonl")))


@fuzz(150)
@given(lines=_jsonl_lines(["expression", "cues", "image_id"]), junk=JSONL_JUNK)
def test_cues_file_random_lines(work, lines, junk):
    from dapo_fast.data.cues import CueFileError, load_cues

    _write_lines(work / "cues.jsonl", lines, junk)
    case("cues JSONL: random lines", CueFileError, lambda: load_cues(str(work / "cues.jsonl")))


@fuzz(150)
@given(lines=_jsonl_lines(["image_id", "boxes", "scores"]), junk=JSONL_JUNK)
def test_detections_file_random_lines(work, lines, junk):
    from dapo_fast.data.detections import load_detections

    _write_lines(work / "detections.jsonl", lines, junk)
    case("detections JSONL: random lines", ValueError, lambda: load_detections(str(work / "detections.jsonl")))


@fuzz(150)
@given(lines=_jsonl_lines(["index", "image", "caption", "entities", "entity_spans"]), junk=JSONL_JUNK)
def test_generated_index_random_lines(work, lines, junk):
    from safetensors.torch import save_file

    from dapo_fast.data.generated import FORMAT, GeneratedSet

    root = work / "generated_bad"
    os.makedirs(root / "shard_00000", exist_ok=True)
    (root / "manifest.json").write_text(json.dumps({"format": FORMAT}))
    save_file({"0000000": torch.zeros(1, 4, 4), "0000001": torch.zeros(2, 4, 4)}, str(root / "shard_00000" / "maps.safetensors"))
    _write_lines(root / "shard_00000" / "index.jsonl", lines, junk)
    # no line may be skipped: an empty index is "no finished shard yet" (FileNotFoundError)
    case("generated index: random lines", (FileFormatError, FileNotFoundError), lambda: GeneratedSet(str(root)))
