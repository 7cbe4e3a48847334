"""QueryMatch's hard-negative selection at its training size: B=32 texts, N=20 queries, D=512,
4 negatives per other image. Baseline: the reference's loop form (a Python loop over the greedy
steps with [B, B-1, N, B-1] gathers); QueryMatch's public code builds a [B, B-1, N, (B-1)*N, D]
cosine input (about 25 GB here) and is not runnable at this size."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import select_hard_negatives
from dapo_fast.ops._reference.select_hard_negatives import select_hard_negatives as reference


def make_inputs(b, n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"queries": torch.randn(b, n, d, generator=g), "text": torch.randn(b, d, generator=g)}


def _case(size, b, n, d, uniqueness, quick=True):
    impls = {
        "dapo_fast[cpu]": lambda i: select_hard_negatives(i["queries"], i["text"], 4, uniqueness, backend="cpu"),
        "reference": lambda i: reference(i["queries"], i["text"], 4, uniqueness),
    }
    return register(Case(
        op="select_hard_negatives", size=size, make_inputs=lambda: make_inputs(b, n, d), impls=impls,
        ours=["dapo_fast[cpu]"], baselines=["reference"], quick=quick,
        note=f"B={b} N={n} D={d} num=4 uniqueness={uniqueness}",
    ))


_case("querymatch-pairwise", 32, 20, 512, "pairwise")
_case("querymatch-paper", 32, 20, 512, "paper")
