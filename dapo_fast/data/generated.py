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

__all__ = ["FORMAT", "shard_name", "image_key", "GeneratedSet", "MixedSet"]

FORMAT = "dapo_fast.generated/1"


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
        with open(manifest_path) as f:
            self.manifest = json.load(f)
        if self.manifest.get("format") != FORMAT:
            raise ValueError(f"{manifest_path} is not a dapo_fast generated set ({FORMAT})")
        self.root = root
        self.records: List[Dict] = []
        self.maps: List[torch.Tensor] = []
        for name in sorted(os.listdir(root)):
            index_path = os.path.join(root, name, "index.jsonl")
            if not name.startswith("shard_") or not os.path.exists(index_path):
                continue
            tensors = load_file(os.path.join(root, name, "maps.safetensors"))
            with open(index_path) as f:
                for line in f:
                    record = json.loads(line)
                    self.records.append(record)
                    self.maps.append(tensors[image_key(record["index"])])
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

