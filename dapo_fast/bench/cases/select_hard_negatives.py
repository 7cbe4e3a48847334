"""QueryMatch's hard-negative selection at its training size: B=32 texts, N=20 queries, D=512,
4 negatives per other image. Baseline: the reference's loop form (a Python loop over the greedy
steps with [B, B-1, N, B-1] gathers); QueryMatch's public code builds a [B, B-1, N, (B-1)*N, D]
cosine input (about 25 GB here) and is not runnable at this size."""
import torch

from dapo_fast.bench.registry import Case, backend_impls, register, to_device
from dapo_fast.ops import select_hard_negatives
from dapo_fast.ops._reference.select_hard_negatives import select_hard_negatives as reference


def make_inputs(b, n, d, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return to_device({"queries": torch.randn(b, n, d, generator=g), "text": torch.randn(b, d, generator=g)}, device)


def _case(size, b, n, d, uniqueness, quick=True):
    impls = {
        **backend_impls(lambda i, b: select_hard_negatives(i["queries"], i["text"], 4, uniqueness, backend=b),
                        ("cpu", "cuda", "triton")),
        "reference": lambda i: reference(i["queries"], i["text"], 4, uniqueness),
    }
    return register(Case(
        op="select_hard_negatives", size=size, make_inputs=lambda device="cpu": make_inputs(b, n, d, device=device),
        impls=impls, ours=["dapo_fast[cpu]", "dapo_fast[cuda]", "dapo_fast[triton]"], baselines=["reference"],
        quick=quick, bytes_moved=4 * (b * n * d + b * d) + 8 * b * (b - 1) * 4,
        # the [BN, BN] query cosines and the [B, B, N] text similarities (2 per multiply-add), then per
        # greedy step and candidate a minimum over the B-1 picks
        flops=2 * (b * n) ** 2 * d + 2 * b * b * n * d + 4 * 2 * b * (b - 1) ** 2 * n,
        note=f"B={b} N={n} D={d} num=4 uniqueness={uniqueness}",
    ))


_case("querymatch-pairwise", 32, 20, 512, "pairwise")
_case("querymatch-paper", 32, 20, 512, "paper")
