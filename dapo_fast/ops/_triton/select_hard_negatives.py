"""QueryMatch's greedy hard-negative selection in Triton: one program per text b holds the
[B-1, N] difficulty and running uniqueness tiles in registers and runs every greedy step; the
cosines and text scores come from two torch matmuls (cuBLAS) beforehand."""
import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

from dapo_fast.ops._meta import select_hard_negatives as _meta

_EPS = 1e-12


@triton.jit
def _minmax_rows(x, ok):
    lo = tl.min(tl.where(ok, x, float("inf")), 1)
    hi = tl.max(tl.where(ok, x, -float("inf")), 1)
    span = hi - lo
    return tl.where(span[:, None] > 0, (x - lo[:, None]) / tl.where(span > 0, span, 1.0)[:, None], 1.0)


@triton.jit
def _select_kernel(cos_ptr, sim_ptr, picked_ptr, out_ptr, B, N, NUM, PAPER: tl.constexpr, BLOCK_J: tl.constexpr,
                   BLOCK_N: tl.constexpr):
    b = tl.program_id(0)
    others = B - 1
    j = tl.arange(0, BLOCK_J)
    n = tl.arange(0, BLOCK_N)
    img = tl.where(j < b, j, j + 1)
    ok = (j < others)[:, None] & (n < N)[None, :]
    ids = img[:, None] * N + n[None, :]                    # global query ids of the candidates
    sim = tl.load(sim_ptr + b * B * N + ids, mask=ok, other=0.0)
    diff = _minmax_rows(sim, ok)
    uniq = tl.full([BLOCK_J, BLOCK_N], 1.0, tl.float32)
    max_cos = tl.full([BLOCK_J, BLOCK_N], -float("inf"), tl.float32)
    for step in range(0, NUM):
        score = tl.where(ok, diff * uniq, -float("inf"))
        best = tl.argmax(score, 1, tie_break_left=True)
        tl.store(out_ptr + (b * others + j) * NUM + step, best.to(tl.int64), mask=j < others)
        tl.store(picked_ptr + b * others + j, img * N + best, mask=j < others)
        tl.debug_barrier()
        for p in range(0, others):
            pid = tl.load(picked_ptr + b * others + p)
            c = tl.load(cos_ptr + ids * (B * N) + pid, mask=ok, other=0.0)
            same = ids == pid
            if PAPER:
                max_cos = tl.maximum(max_cos, tl.where(same, 1.0, c))
            else:
                dist = tl.minimum(tl.maximum((1.0 - c) / 2.0, 0.0), 1.0)
                uniq = tl.minimum(uniq, tl.where(same, 0.0, dist))
        if PAPER:
            uniq = _minmax_rows(-max_cos, ok)
        tl.debug_barrier()


@triton_op("dapo_fast::select_hard_negatives_triton", mutates_args=())
def select_hard_negatives_triton(queries: torch.Tensor, text: torch.Tensor, num: int,
                                 uniqueness: str) -> torch.Tensor:
    b, n, d = queries.shape
    out = torch.empty((b, max(b - 1, 0), num), dtype=torch.int64, device=queries.device)
    if b <= 1 or num == 0:
        return out
    q = queries.to(torch.float32).reshape(b * n, d)
    qn = q / q.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    cos = (qn @ qn.T).contiguous()
    sim = (text.to(torch.float32) @ q.T).contiguous()
    picked = torch.empty(b * (b - 1), dtype=torch.int32, device=queries.device)
    wrap_triton(_select_kernel)[(b,)](cos, sim, picked, out, b, n, num, PAPER=uniqueness == "paper",
                                      BLOCK_J=max(2, triton.next_power_of_2(b - 1)),
                                      BLOCK_N=max(2, triton.next_power_of_2(n)))
    return out


_meta.register(select_hard_negatives_triton)
