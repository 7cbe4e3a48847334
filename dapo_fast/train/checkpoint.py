"""Atomic, self-describing, checksummed training checkpoints that load without running code.

A checkpoint holds the model, optimiser, LR scheduler, curriculum and method state, every RNG state
(python, numpy, torch), the step, the config and the tokenizer. It is one ``torch.save`` file
(``torch.load(path, weights_only=True)`` opens it) whose top level is the payload plus two keys:
``format`` and ``checksum``, the SHA-256 of the payload's values (:func:`payload_digest`).

What a payload may hold: tensors (dense, strided) and plain containers of them: dict, list,
tuple, str, int, float, bool, None. That is what ``torch.load(weights_only=True)`` rebuilds
without running code from the file, so it is also the contract of every ``state_dict`` that goes
into a checkpoint (a method's ``Method.state_dict()`` included): :func:`save_checkpoint` refuses
anything else (a numpy array, a numpy scalar, an object), naming where it sits, at save time
rather than at the resume that could not load it.

Writing goes through :func:`dapo_fast.safe_io.atomic_write` (temporary file, fsync, rename,
directory fsync): a crash mid-write leaves the old checkpoint in place. Loading refuses a file that
holds anything but tensors and plain containers (naming the class), a file whose checksum does not
match (a flipped byte never becomes a silently different optimiser state), and a file that is not
a complete dapo_fast checkpoint, each with a :class:`CheckpointError` naming the file.
"""
from __future__ import annotations

import collections
import hashlib
import os
import random
import struct
from typing import Any, Dict

import numpy as np
import torch

from dapo_fast.safe_io import FileFormatError, atomic_write, torch_load_safely

FORMAT = "dapo_fast.checkpoint/2"
REQUIRED = ("model", "step", "config")
_ENVELOPE = ("format", "checksum")


class CheckpointError(RuntimeError):
    pass


def rng_state() -> Dict:
    """Every global RNG state as tensors and plain containers (numpy's key array as an int64 tensor)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return dict(python=random.getstate(),
                numpy=[name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached_gaussian)],
                torch=torch.get_rng_state())


def set_rng_state(state: Dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])


# ------------------------------------------------------------------------------------------ checksum
def _digest_into(h, value: Any, where: str) -> None:
    """Feed ``value`` to the hash ``h`` unambiguously (a type tag and a length before every item);
    CheckpointError naming ``where`` for anything a checkpoint may not hold."""
    kind = type(value)
    if value is None:
        h.update(b"N")
    elif kind is bool:
        h.update(b"B1" if value else b"B0")
    elif kind is int:
        h.update(b"I%d;" % value)
    elif kind is float:
        h.update(b"F" + struct.pack("<d", value))
    elif kind is str:
        raw = value.encode("utf-8", "surrogatepass")
        h.update(b"S%d:" % len(raw) + raw)
    elif isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized or value.device.type == "meta":
            raise CheckpointError(f"checkpoint value '{where}' is a {value.layout} tensor on {value.device}; "
                                  f"a checkpoint holds dense tensors only")
        data = value.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1).view(torch.uint8)
        h.update(b"T%s%s;%d:" % (str(value.dtype).encode(), str(tuple(value.shape)).encode(), data.numel()))
        h.update(data.numpy().data)
    elif kind in (list, tuple):
        h.update(b"L%d[" % len(value) if kind is list else b"U%d(" % len(value))
        for i, item in enumerate(value):
            _digest_into(h, item, f"{where}[{i}]")
    elif kind in (dict, collections.OrderedDict):
        h.update(b"D%d{" % len(value))
        for key, item in value.items():
            _digest_into(h, key, f"{where} (a key)")
            _digest_into(h, item, f"{where}[{key!r}]")
        metadata = getattr(value, "_metadata", None)  # nn.Module state dicts carry their version info here
        if metadata is not None:
            h.update(b"M")
            _digest_into(h, metadata, f"{where}._metadata")
    else:
        raise CheckpointError(f"checkpoint value '{where}' has type {kind.__module__}.{kind.__qualname__}; a "
                              f"checkpoint holds only tensors and plain containers (dict, list, tuple, str, int, "
                              f"float, bool, None), which load without running code")


def payload_digest(payload: Dict) -> str:
    """"sha256:<hex>" of a checkpoint payload: every key, value, tensor dtype, shape and byte, in order."""
    h = hashlib.sha256()
    _digest_into(h, {k: v for k, v in payload.items() if k not in _ENVELOPE}, "checkpoint")
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------------------------------ files
def checkpoint_file(path: str) -> str:
    """The checkpoint file a path names: the path itself, or ``<dir>/last.pt`` for a run directory."""
    return os.path.join(path, "last.pt") if os.path.isdir(path) else path


def save_checkpoint(path: str, state: Dict) -> None:
    """Write ``state`` (tensors and plain containers) with the format tag and its checksum to
    ``path`` atomically."""
    reserved = [k for k in _ENVELOPE if k in state]
    if reserved:
        raise CheckpointError(f"checkpoint payload may not use the reserved key(s) {reserved}")
    envelope = dict(state, format=FORMAT, checksum=payload_digest(state))
    atomic_write(path, lambda f: torch.save(envelope, f))


def load_checkpoint(path: str) -> Dict:
    """Read a checkpoint (a file, or a run directory's ``last.pt``); CheckpointError naming the file
    for one that is corrupt, foreign, refused (it holds more than tensors and plain containers),
    fails its checksum or is incomplete."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    file = checkpoint_file(path)
    if not os.path.exists(file):
        raise FileNotFoundError(f"checkpoint not found: {path} is a directory without last.pt")
    path = file
    try:
        state = torch_load_safely(path, "checkpoint")
    except FileFormatError as err:
        hint = (" (checkpoints of dapo_fast before format 2 held numpy RNG state; they cannot be loaded safely)"
                if "'numpy." in str(err) else "")
        raise CheckpointError(f"{err}{hint}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a dapo_fast training checkpoint (no '{FORMAT}' tag)")
    try:
        digest = payload_digest(state)
    except CheckpointError as err:
        raise CheckpointError(f"checkpoint {path} is corrupt: {err}") from None
    if state.get("checksum") != digest:
        raise CheckpointError(f"checkpoint {path} failed its integrity check (the checksum of its contents "
                              f"differs from the one stored): the file is corrupt or was modified")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {missing}")
    problems = _check_required(state)
    if problems:
        raise CheckpointError(f"checkpoint {path} is malformed: {problems}")
    return {k: v for k, v in state.items() if k not in _ENVELOPE}


def _check_required(state: Dict) -> str:
    model = state["model"]
    if not isinstance(model, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in model.items()):
        return "'model' must map parameter names to tensors"
    if type(state["step"]) is not int or state["step"] < 0:
        return f"'step' must be a non-negative int, got {state['step']!r}"
    if not isinstance(state["config"], dict):
        return f"'config' must be a dict, got {type(state['config']).__name__}"
    return ""
