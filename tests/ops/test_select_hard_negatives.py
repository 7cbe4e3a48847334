"""select_hard_negatives: every backend vs the reference loop form."""
import random

import pytest
import torch

import dapo_fast
from dapo_fast.ops import select_hard_negatives
from dapo_fast.ops._reference.select_hard_negatives import select_hard_negatives as reference
from tests._helpers import compiled_matches_eager

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


@pytest.mark.parametrize("uniqueness", ["pairwise", "paper"])
def test_cpu_matches_reference(seed, uniqueness):
    for _ in range(6):
        b, n, d = random.randint(1, 9), random.randint(1, 12), random.randint(8, 64)
        num = random.randint(0, 6)
        q, t = torch.randn(b, n, d), torch.randn(b, d)
        got = select_hard_negatives(q, t, num, uniqueness, backend="cpu")
        assert got.dtype == torch.int64 and got.shape == (b, max(b - 1, 0), num)
        assert torch.equal(got, reference(q, t, num, uniqueness))


def test_greedy_semantics_by_hand():
    """Two other images' queries: the first pick is the most text-like; the second avoids it."""
    text = torch.tensor([[1.0, 0.0, 0.0]] * 3)
    queries = torch.tensor([
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        [[0.9, 0.1, 0.0], [0.8, 0.0, 0.2], [0.1, 0.9, 0.0]],     # image 1: 0 is hardest, 1 next
        [[0.2, 0.8, 0.0], [0.95, 0.05, 0.0], [0.5, 0.0, 0.5]],   # image 2: 1 is hardest
    ])
    out = select_hard_negatives(queries, text, 2)
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 1
    assert torch.equal(out, reference(queries, text, 2))
    assert torch.equal(select_hard_negatives(queries, text, 2, "paper"), reference(queries, text, 2, "paper"))


def test_float64_half_and_equal_scores(seed):
    q, t = torch.randn(5, 6, 16, dtype=torch.float64), torch.randn(5, 16, dtype=torch.float64)
    assert torch.equal(select_hard_negatives(q, t, 4), reference(q, t, 4))
    qh, th = q.half(), t.half()
    assert torch.equal(select_hard_negatives(qh, th, 3, "paper"), reference(qh, th, 3, "paper"))
    same = torch.ones(3, 4, 8)  # every score equal: first index wins, then uniqueness decides
    assert torch.equal(select_hard_negatives(same, torch.ones(3, 8), 3), reference(same, torch.ones(3, 8), 3))


def test_opcheck(seed):
    q, t = torch.randn(4, 5, 8), torch.randn(4, 8)
    for u in ("pairwise", "paper"):
        torch.library.opcheck(torch.ops.dapo_fast.select_hard_negatives.default, (q, t, 3, u))


def test_compile_fullgraph(seed):
    q, t = torch.randn(4, 5, 8), torch.randn(4, 8)
    (got,), _ = compiled_matches_eager(lambda q, t: select_hard_negatives(q, t, 3, "paper"), q, t)
    assert torch.equal(got, reference(q, t, 3, "paper"))


class TestBadInputs:
    def test_shapes_dtypes(self):
        with pytest.raises(ValueError, match="queries"):
            select_hard_negatives(torch.randn(4, 5), torch.randn(4, 5))
        with pytest.raises(ValueError, match="text"):
            select_hard_negatives(torch.randn(4, 5, 8), torch.randn(3, 8))
        with pytest.raises(TypeError, match="queries and text"):
            select_hard_negatives(torch.randn(4, 5, 8), torch.randn(4, 8, dtype=torch.float64))
        with pytest.raises(ValueError, match="text"):
            select_hard_negatives(torch.randn(4, 5, 8), torch.randn(4, 8, device="meta"))
        with pytest.raises(RuntimeError, match="text"):
            torch.ops.dapo_fast.select_hard_negatives(torch.randn(4, 5, 8), torch.randn(3, 8), 2, "pairwise")

    def test_values(self):
        with pytest.raises(ValueError, match="num"):
            select_hard_negatives(torch.randn(4, 5, 8), torch.randn(4, 8), -1)
        with pytest.raises(ValueError, match="uniqueness"):
            select_hard_negatives(torch.randn(4, 5, 8), torch.randn(4, 8), 2, "greedy")
        with pytest.raises(ValueError, match="N > 0"):
            select_hard_negatives(torch.randn(4, 0, 8), torch.randn(4, 8), 2)
        with pytest.raises(RuntimeError, match="uniqueness"):
            torch.ops.dapo_fast.select_hard_negatives(torch.randn(4, 5, 8), torch.randn(4, 8), 2, "greedy")


@pytest.mark.triton
@pytest.mark.parametrize("uniqueness", ["pairwise", "paper"])
def test_triton_matches_reference(seed, uniqueness):
    q, t = torch.randn(4, 5, 12), torch.randn(4, 12)
    assert torch.equal(select_hard_negatives(q, t, 3, uniqueness, backend="triton"), reference(q, t, 3, uniqueness))


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    from dapo_fast.ops._triton.select_hard_negatives import select_hard_negatives_triton

    torch.library.opcheck(select_hard_negatives_triton, (torch.randn(3, 4, 8), torch.randn(3, 8), 2, "pairwise"),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    q, t = torch.randn(32, 20, 512), torch.randn(32, 512)
    for u in ("pairwise", "paper"):
        got = select_hard_negatives(q.cuda(), t.cuda(), 4, u, backend=backend)
        assert torch.equal(got.cpu(), reference(q, t, 4, u))
    op = (torch.ops.dapo_fast.select_hard_negatives.default if backend == "cuda"
          else torch.ops.dapo_fast.select_hard_negatives_triton.default)
    torch.library.opcheck(op, (q.cuda(), t.cuda(), 4, "paper"))
