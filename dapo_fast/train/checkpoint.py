"""Atomic, self-describing training checkpoints.

A checkpoint holds the model, optimiser, LR scheduler, curriculum state, every RNG state (python,
numpy, torch), the step, the config and the tokenizer. It is written to a temporary file in the
same directory and renamed over the target, so a crash mid-write never leaves a torn file.
"""
from __future__ import annotations

import os
import random
import tempfile
from typing import Dict

import numpy as np
import torch

FORMAT = "dapo_fast.checkpoint/1"


class CheckpointError(RuntimeError):
    pass


def rng_state() -> Dict:
    return dict(python=random.getstate(), numpy=np.random.get_state(), torch=torch.get_rng_state())


def set_rng_state(state: Dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str, state: Dict) -> None:
    """Write ``state`` (plus the format tag) to ``path`` atomically."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state, format=FORMAT), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


REQUIRED = ("model", "step", "config")


def load_checkpoint(path: str) -> Dict:
    """Read a checkpoint; clear errors for a missing, corrupt or foreign file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        last = os.path.join(path, "last.pt")
        if not os.path.exists(last):
            raise FileNotFoundError(f"checkpoint not found: {path} is a directory without last.pt")
        path = last
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a dapo_fast training checkpoint (no '{FORMAT}' tag)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {missing}")
    return state
