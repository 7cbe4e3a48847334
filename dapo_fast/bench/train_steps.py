"""Benchmark cases that time one whole training step of a proposal method (MPL, ReIR,
QueryMatch/AlignCAT): what the ops buy inside a real step, not in isolation.

A step is the method's ``forward_loss`` (model, teacher, selections, loss), backward, the
optimiser step and ``after_optimizer_step`` (MPL's momentum update), on one batch of the synthetic
benchmark, run three ways from the same initial weights:

* ``dapo_fast[auto]``: the ops' compiled kernels (``backend="auto"``);
* ``reference``: every op's pure-PyTorch reference (``use_backend("reference")``);
* ``paper_code_form``: the reference ops plus the papers' own code forms where they differ in
  shape (``code_form`` option: RoIAlign once per image; MPL's [B, B, Q, K] loss and
  [B, B, K, K] false-negative mask; ReIR's per-phrase loop for the self-taught targets;
  QueryMatch's greedy selection loop, which is the reference already).

``fwd_ms`` is the time of the whole step (the step runs its own backward), ``peak_mb`` its peak
allocation; the runner reports both as ratios against the two baselines.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from dapo_fast.bench.registry import Case, register

IMPLS = {"dapo_fast[auto]": ("auto", False), "reference": ("reference", False),
         "paper_code_form": ("reference", True)}


def build_step_inputs(method: str, batch_size: int, overrides: Optional[Dict] = None, seed: int = 0) -> Dict:
    """{impl: (method object, optimiser, batch, backend)} with identical initial weights and batch."""
    from dapo_fast.data import all_phrases
    from dapo_fast.data.sample import WordTokenizer
    from dapo_fast.data.synthetic import generate_split
    from dapo_fast.train import methods
    from dapo_fast.train.config import config_from_dict
    from dapo_fast.train.distributed import DistInfo
    from dapo_fast.train.loop import build_optimizer

    data = generate_split("train", batch_size, seed)
    samples = [data[i] for i in range(batch_size)]
    tokenizer = WordTokenizer.build(all_phrases(data))
    out = {}
    for impl, (backend, code_form) in IMPLS.items():
        sections = {k: dict(v) for k, v in (overrides or {}).items()}
        sections.setdefault(method, {})["code_form"] = code_form
        cfg = config_from_dict(dict(sections, method=method, train=dict(batch_size=batch_size)))
        torch.manual_seed(seed)
        m = methods.get(method)(cfg, None, tokenizer, DistInfo())
        opt, _ = build_optimizer(cfg, m.model)
        out[impl] = (m, opt, m.collate(samples), backend)
    return out


def train_step(inputs: Dict, impl: str) -> torch.Tensor:
    """One optimiser step of ``impl``'s method on its batch; returns the loss."""
    from dapo_fast.ops import use_backend

    m, opt, batch, backend = inputs[impl]
    with torch.enable_grad(), use_backend(backend):
        parts = m.forward_loss(m.model, batch, None, torch.tensor(0.0))
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        m.after_optimizer_step(m.step + 1)
    return parts["loss"].detach()


def register_step_case(method: str, size: str, batch_size: int, overrides: Optional[Dict] = None,
                       quick: bool = False, note: str = "") -> Case:
    impls = {name: (lambda i, name=name: train_step(i, name)) for name in IMPLS}
    return register(Case(
        op=f"{method}_train_step", size=size, make_inputs=lambda: build_step_inputs(method, batch_size, overrides),
        impls=impls, ours=["dapo_fast[auto]"], baselines=["paper_code_form", "reference"], quick=quick,
        measure_memory=True, note=note or f"one {method} training step, batch {batch_size}, synthetic benchmark"))
