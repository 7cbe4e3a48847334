"""Momentum teacher update over a whole model: ours (one multi-tensor call) vs the Python loop of
``lerp_`` that training code usually writes, the reference loop (mul_ + add_) and
torch._foreach_lerp_."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import momentum_update_
from dapo_fast.ops._reference.momentum_update import momentum_update_ as reference
from dapo_fast.ops._reference.momentum_update import momentum_update_lerp_loop_ as lerp_loop


def mpl_encoder_shapes(layers=6, d=300, ff=1200):
    """A transformer region encoder + LSTM phrase encoder of MPL's width (about 7.5M parameters)."""
    shapes = [(d, 2048), (d,), (d, d), (d,)]
    for _ in range(layers):
        shapes += [(3 * d, d), (3 * d,), (d, d), (d,), (ff, d), (ff,), (d, ff), (d,), (d,), (d,), (d,), (d,)]
    shapes += [(4 * d, d), (4 * d, d), (4 * d,), (4 * d,)]
    return shapes


def make_inputs(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"teacher": [torch.randn(s, generator=g) for s in shapes],
            "student": [torch.randn(s, generator=g) for s in shapes]}


def _case(size, shapes, quick):
    numel = sum(torch.Size(s).numel() for s in shapes)
    impls = {
        "dapo_fast[cpu]": lambda i: momentum_update_(i["teacher"], i["student"], 0.99, backend="cpu"),
        "lerp_loop": lambda i: lerp_loop(i["teacher"], i["student"], 0.99),
        "reference": lambda i: reference(i["teacher"], i["student"], 0.99),
        "torch._foreach_lerp_": lambda i: torch._foreach_lerp_(i["teacher"], i["student"], 0.01),
    }
    return register(Case(
        op="momentum_update_", size=size, make_inputs=lambda: make_inputs(shapes), impls=impls,
        ours=["dapo_fast[cpu]"], baselines=["lerp_loop", "reference", "torch._foreach_lerp_"],
        bytes_moved=3 * 4 * numel, quick=quick, note=f"{len(shapes)} tensors, {numel} floats, in place",
    ))


_case("mpl-encoder", mpl_encoder_shapes(), quick=True)
_case("400-small", [(32, 32)] * 400, quick=True)
