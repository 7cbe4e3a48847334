"""cross_attention_probs_mean at SD-1.4's 16x16 cross-attention: B=2 (CFG), 8 heads, HW=256,
T=77, d=160, vs materialise-softmax-mean (eager, torch.compile) and Attend-and-Excite's form
(baddbmm scores on [B*heads], softmax, stored, averaged)."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import cross_attention_probs_mean
from dapo_fast.ops._reference.cross_attention_probs_mean import cross_attention_probs_mean as reference


def attend_and_excite_form(q, k, scale):
    """A&E: scores = baddbmm(empty, q, k^T, beta=0, alpha=scale) on [B*heads, HW, d], softmax,
    the [B*heads, HW, T] probabilities stored, then averaged over heads."""
    b, h, n, d = q.shape
    qb, kb = q.reshape(b * h, n, d), k.reshape(b * h, k.shape[2], d)
    empty = torch.empty(b * h, n, kb.shape[1], dtype=q.dtype)
    probs = torch.baddbmm(empty, qb, kb.transpose(-1, -2), beta=0, alpha=scale).softmax(dim=-1)
    return probs.reshape(b, h, n, -1).mean(1)


def _case(size, batch, heads, rows, keys, dim, quick):
    scale = dim ** -0.5

    def make():
        torch.manual_seed(0)
        # the [B, HW, heads, d] projections diffusers makes, viewed as [B, heads, HW, d]
        q = torch.randn(batch, rows, heads, dim).transpose(1, 2)
        k = torch.randn(batch, keys, heads, dim).transpose(1, 2)
        return {"q": q.requires_grad_(), "k": k.requires_grad_()}

    compiled = torch.compile(reference, dynamic=False)
    impls = {
        "dapo_fast[cpu]": lambda i: cross_attention_probs_mean(i["q"], i["k"], scale, backend="cpu"),
        "reference": lambda i: reference(i["q"], i["k"], scale),
        "reference[compile]": lambda i: compiled(i["q"], i["k"], scale),
        "attend_and_excite": lambda i: attend_and_excite_form(i["q"], i["k"], scale),
    }
    return register(Case(
        op="cross_attention_probs_mean", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["reference", "reference[compile]", "attend_and_excite"], grad_inputs=["q", "k"],
        bytes_moved=4 * (batch * heads * (rows + keys) * dim + batch * rows * keys), quick=quick,
        note=f"B={batch} heads={heads} HW={rows} T={keys} d={dim}",
    ))


_case("sd14-16x16", 2, 8, 256, 77, 160, quick=True)
