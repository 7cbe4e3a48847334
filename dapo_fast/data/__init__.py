"""Datasets: the synthetic benchmark and parsers for real formats, all returning the same sample dicts."""
from __future__ import annotations

from typing import Dict, List

import torch

from dapo_fast.data.sample import (EVAL_ONLY_KEYS, WordTokenizer, collate_eval, collate_train, make_sample)


def build_splits(data_cfg) -> Dict[str, object]:
    """{"train", "val", "test"} datasets (indexable, len) for a DataConfig; "multi" for the synthetic one.
    With ``data_cfg.generated_root`` the training split is the real one followed by the generated
    images (:class:`dapo_fast.data.generated.MixedSet`); evaluation splits stay real."""
    splits = _real_splits(data_cfg)
    if getattr(data_cfg, "generated_root", None):
        from dapo_fast.data.generated import GeneratedSet, MixedSet

        splits["train"] = MixedSet(splits["train"], GeneratedSet(data_cfg.generated_root))
    return splits


def _real_splits(data_cfg) -> Dict[str, object]:
    if data_cfg.kind == "synthetic":
        from dapo_fast.data.synthetic import generate_benchmark, load_split, multi_object_subset

        generate_benchmark(data_cfg.root, data_cfg.num_train, data_cfg.num_val, data_cfg.num_test, data_cfg.seed,
                           preset=data_cfg.preset)
        splits = {name: load_split(data_cfg.root, name, data_cfg.preset) for name in ("train", "val", "test")}
        splits["multi"] = multi_object_subset(splits["test"])
        return splits
    if data_cfg.kind == "flickr30k":
        from dapo_fast.data.flickr30k import load_flickr30k

        return {s: load_flickr30k(data_cfg.root, s, data_cfg.image_dir) for s in ("train", "val", "test")}
    if data_cfg.kind == "refcoco":
        from dapo_fast.data.refcoco import load_refcoco

        names = {"train": "train", "val": "val", "test": "test" if data_cfg.dataset != "refcoco" else "testA"}
        return {k: load_refcoco(data_cfg.root, data_cfg.dataset, v, data_cfg.split_by, data_cfg.image_dir)
                for k, v in names.items()}
    raise ValueError(f"data.kind must be synthetic, flickr30k or refcoco, got {data_cfg.kind!r}")


def phrase_lists(dataset) -> List[List[str]]:
    """The entity phrases of every sample, without decoding images when the dataset holds them."""
    return dataset.phrases if hasattr(dataset, "phrases") else [s["phrases"] for s in dataset]


def object_counts(dataset) -> torch.Tensor:
    """Objects per sample (ScoreQ), without decoding images when the dataset holds them."""
    if isinstance(getattr(dataset, "num_objects", None), torch.Tensor):
        return dataset.num_objects.clone()
    return torch.tensor([s["num_objects"] for s in dataset], dtype=torch.long)


def all_phrases(dataset) -> List[str]:
    return [p for ps in phrase_lists(dataset) for p in ps]


__all__ = ["build_splits", "all_phrases", "phrase_lists", "object_counts", "WordTokenizer", "collate_train", "collate_eval", "make_sample",
           "EVAL_ONLY_KEYS"]
