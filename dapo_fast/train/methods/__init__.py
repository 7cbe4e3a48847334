"""Training methods as plug-ins of the one loop (``dapo-fast train --method NAME``).

Each method is a module here that defines a :class:`~dapo_fast.train.methods.base.Method` subclass
named ``METHOD``: its options (the YAML section named after it), its model, its batch, its loss,
what it does after an optimiser step, its evaluation and its ablation variants. The loop
(:mod:`dapo_fast.train.loop`) owns everything the methods share: data, tokenizer, optimiser,
curriculum sampler, DDP, compile, checkpoints, logging.
"""
from __future__ import annotations

import importlib
from typing import Type

# name -> module; the modules are imported on first use
_MODULES = {
    "wwbl": "dapo_fast.train.methods.wwbl",
}
NAMES = tuple(_MODULES)


def get(name: str) -> Type["Method"]:  # noqa: F821 (base.Method, imported lazily)
    """The Method subclass registered under ``name``."""
    if name not in _MODULES:
        raise ValueError(f"method must be one of {NAMES}, got {name!r}")
    return importlib.import_module(_MODULES[name]).METHOD
