"""QueryMatch / AlignCAT hard-negative query selection (greedy difficulty x uniqueness).

For every text b and every other image a, picks ``num`` of a's N visual queries: each step takes
the argmax of difficulty (min-max of ``<query, text_b>`` over a's queries) times uniqueness, then
lowers uniqueness with the cosine distance to the queries just picked ("pairwise", QueryMatch's
public code) or recomputes it as min-max of ``-max cos`` to everything picked ("paper", eq. 2).
Exact rules (ties, equal values, self-distance) in
``dapo_fast/ops/_reference/select_hard_negatives.py``.

CPU/CUDA: two matrix products give every cosine and every text-query score, then one task per
text keeps the running uniqueness of all its candidates and runs the greedy steps; the reference
loops over the steps with [B, B-1, N, B-1] gathers. No gradient (indices).
"""
import torch
from torch import Tensor

from dapo_fast import _extension
from dapo_fast.ops import _backend, _checks
from dapo_fast.ops._meta import select_hard_negatives as _meta
from dapo_fast.ops._reference import select_hard_negatives as _reference

__all__ = ["select_hard_negatives"]

UNIQUENESS = ("pairwise", "paper")


def select_hard_negatives(queries: Tensor, text: Tensor, num: int = 4, uniqueness: str = "pairwise", *,
                          backend: str = "auto") -> Tensor:
    """Indices of the hard negative queries of every other image, per text.

    Args:
        queries: Tensor[B, N, D] visual query features of each image (QueryMatch: N = 20, D = 512).
        text: Tensor[B, D] text feature of each image's expression.
        num: negatives per other image (>= 0; QueryMatch: 4).
        uniqueness: "pairwise" (public code) | "paper" (eq. 2).
        backend: "auto" | "cpu" | "cuda" | "triton" | "reference".

    Returns:
        int64 Tensor[B, B-1, num]: ``out[b, j, s]`` is the query index (in [0, N)) picked at step s
        in the j-th other image of text b (other images in increasing order, skipping b).
    """
    _checks.tensor(queries, "queries", dim=3)
    b, n, d = queries.shape
    _checks.tensor(text, "text", device=queries.device, shape=(b, d))
    _checks.same_dtype(queries, "queries", text, "text")
    if not isinstance(num, int) or isinstance(num, bool):
        raise TypeError(f"num must be an int, got {num!r}")
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    if uniqueness not in UNIQUENESS:
        raise ValueError(f"uniqueness must be one of {UNIQUENESS}, got {uniqueness!r}")
    if n == 0 and b > 1 and num > 0:
        raise ValueError("queries must hold at least one query per image (N > 0)")
    queries, text = queries.detach(), text.detach()
    chosen = _backend.resolve(backend, queries.device)
    if chosen == "reference":
        return _reference.select_hard_negatives(queries, text, num, uniqueness)
    if chosen == "triton":
        from dapo_fast.ops._triton import select_hard_negatives as _triton

        return _triton.select_hard_negatives_triton(queries, text, num, uniqueness)
    return torch.ops.dapo_fast.select_hard_negatives(queries, text, num, uniqueness)


if _extension.HAS_C:
    _meta.register(torch.ops.dapo_fast.select_hard_negatives.default)
