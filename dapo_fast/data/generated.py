"""Generated training images (DAPO's generation-aided training) as datasets.

``dapo-fast generate`` (:mod:`dapo_fast.diffusion.generate`) writes shards::

    <root>/manifest.json
    <root>/shard_00000/index.jsonl         one JSON line per image
    <root>/shard_00000/0000000.png         the image
    <root>/shard_00000/maps.safetensors    "0000000" -> float32 [E, h, w] final-step entity maps

:class:`GeneratedSet` reads the finished shards as sample dicts carrying ``attn_maps`` (the
targets of DAPO's eq. 5) and ``mu`` = 0 (eq. 6: a generated image trains with L_D only).
:class:`MixedSet` puts a real training set and a generated one behind one index, so the
curriculum draws from both.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List

import torch

from dapo_fast.data import object_counts, phrase_lists
from dapo_fast.safe_io import FileFormatError, jsonl_error, jsonl_objects, path_inside

__all__ = ["FORMAT", "shard_name", "image_key", "GeneratedSet", "MixedSet"]

FORMAT = "dapo_fast.generated/1"


def _checked_map(record: Dict, maps: Dict[str, torch.Tensor], root: str, index_path: str,
                 number: int) -> torch.Tensor:
    """The entity maps of one index line, after checking the line's fields (a shard may come from
    someone else's machine)."""
    def bad(reason: str) -> FileFormatError:
        return jsonl_error(FileFormatError, "generated index", index_path, number, reason)

    index, entities = record.get("index"), record.get("entities")
    if type(index) is not int or index < 0:
        raise bad(f"'index' must be an int >= 0, got {index!r}")
    if not isinstance(record.get("caption"), str):
        raise bad("'caption' must be a string")
    if not isinstance(entities, list) or not entities or not all(isinstance(e, str) for e in entities):
        raise bad("'entities' must be a non-empty list of strings")
    spans = record.get("entity_spans")
    if (not isinstance(spans, list) or len(spans) != len(entities)
            or not all(isinstance(p, list) and len(p) == 2 and all(type(v) is int for v in p) for p in spans)):
        raise bad(f"'entity_spans' must be {len(entities)} [start, end] pairs of ints")
    path_inside(root, record.get("image"), f"generated index {index_path} line {number}: 'image'")
    entity_maps = maps.get(image_key(index))
    if entity_maps is None or entity_maps.dim() != 3 or entity_maps.shape[0] != len(entities):
        shape = None if entity_maps is None else tuple(entity_maps.shape)
        raise bad(f"maps.safetensors needs [{len(entities)}, h, w] maps under {image_key(index)!r}, got {shape}")
    return entity_maps


def shard_name(k: int) -> str:
    return f"shard_{k:05d}"


def image_key(index: int) -> str:
    return f"{index:07d}"


class GeneratedSet(torch.utils.data.Dataset):
    """The finished shards of a ``generate`` output. A sample is the common sample dict: image
    path, caption, entity phrases and character spans, ``attn_maps`` [E, h, w], ``mu`` = 0, and
    ``num_objects`` = the number of prompted entities, the ScoreQ of a generated image (it is
    made to depict the prompted objects), so generated images join the curriculum's subsets
    like real ones."""

    has_attention = True

    def __init__(self, root: str):
        from safetensors.torch import load_file

        manifest_path = os.path.join(root, "manifest.json")
        if not os.path.exists(manifest_path):
            raise FileNotFoundError(f"no generated set at {root} (manifest.json missing): run `dapo-fast generate`")
        with open(manifest_path, encoding="utf-8") as f:
            try:
                self.manifest = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise FileFormatError(f"{manifest_path} is not valid JSON ({err})") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise FileFormatError(f"{manifest_path} is not a dapo_fast generated set ({FORMAT})")
        self.root = root
        self.records: List[Dict] = []
        self.maps: List[torch.Tensor] = []
        for name in sorted(os.listdir(root)):
            index_path = os.path.join(root, name, "index.jsonl")
            if not name.startswith("shard_") or not os.path.exists(index_path):
                continue
            tensors = load_file(os.path.join(root, name, "maps.safetensors"))
            for number, record in jsonl_objects(index_path, "generated index"):
                self.maps.append(_checked_map(record, tensors, root, index_path, number))
                self.records.append(record)
        if not self.records:
            raise FileNotFoundError(f"the generated set at {root} has no finished shard yet")
        self.phrases = [r["entities"] for r in self.records]
        self.captions = [r["caption"] for r in self.records]
        self.num_objects = torch.tensor([len(r["entities"]) for r in self.records], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Dict:
        from dapo_fast.data.sample import make_sample

        r = self.records[i]
        return make_sample(image=os.path.join(self.root, r["image"]), image_id=f"generated/{r['index']}",
                           caption=r["caption"], phrases=r["entities"], spans=r["entity_spans"],
                           num_objects=len(r["entities"]), attn_maps=self.maps[i], mu=0.0)


class MixedSet(torch.utils.data.Dataset):
    """``real`` (indices 0..len(real)-1) followed by ``generated``; ``generated_mask`` [N] marks
    the generated samples (the curriculum uses it to draw a fixed share of each batch from them)."""

    has_attention = True

    def __init__(self, real, generated):
        self.real, self.generated = real, generated
        self.num_real = len(real)
        self.phrases = list(phrase_lists(real)) + list(phrase_lists(generated))
        self.num_objects = torch.cat([object_counts(real), object_counts(generated)])
        self.generated_mask = torch.arange(len(self.phrases)) >= self.num_real

    def __len__(self) -> int:
        return len(self.phrases)

    def __getitem__(self, i: int) -> Dict:
        return self.real[i] if i < self.num_real else self.generated[i - self.num_real]

