"""MPL's pseudo-label contrastive loss at Flickr30k sizes: B images x K=100 regions x Q=32
phrases, D=300 embeddings. B=64 is the size scaled to this machine, B=256 the paper's batch.

Implementations: ours (fused), the reference and its torch.compile, MPL's public-code form (what
MPL trains with) and ``floor[matmul]``: the plain product phrase @ region^T of the same
sizes (forward: 1 product; forward+backward: 3), the unavoidable matrix work of the loss.
Peak CPU allocation of forward+backward is reported per implementation (measure_memory).
"""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import pseudo_label_contrastive_loss
from dapo_fast.ops._reference.pseudo_label_contrastive_loss import (
    pseudo_label_contrastive_loss as reference, pseudo_label_contrastive_loss_mpl_code_form as code_form)

K, Q, D = 100, 32, 300
FN_DENSITY = 1e-3  # share of cross-image regions flagged as false negatives (about 10% of image pairs)


def make_inputs(b, k=K, q=Q, d=D, fn_density=FN_DENSITY, seed=0):
    g = torch.Generator().manual_seed(seed)
    phrase = torch.randn(b, q, d, generator=g) / d ** 0.5 * 4
    region = torch.randn(b, k, d, generator=g) / d ** 0.5 * 4
    phrase_valid = torch.rand(b, q, generator=g) < 0.3          # Flickr30k: ~3 to 10 phrases of 32
    phrase_valid[:, 0] = True
    region_valid = torch.rand(b, k, generator=g) < 0.9
    fn_mask = (torch.rand(b, b, k, generator=g) < fn_density) & ~torch.eye(b, dtype=torch.bool)[:, :, None]
    return {"phrase": phrase.requires_grad_(), "region": region.requires_grad_(),
            "teacher_phrase": torch.randn(b, q, d, generator=g) / d ** 0.5 * 4,
            "teacher_region": torch.randn(b, k, d, generator=g) / d ** 0.5 * 4,
            "phrase_valid": phrase_valid, "region_valid": region_valid, "fn_mask": fn_mask}


def _args(i):
    return (i["phrase"], i["region"], i["teacher_phrase"], i["teacher_region"], i["phrase_valid"], i["region_valid"],
            i["fn_mask"])


def floor_matmul(i):
    """The loss's unavoidable products: logits phrase @ region^T (backward: the two gradient products)."""
    p, r = i["phrase"], i["region"]
    return p.reshape(-1, p.shape[-1]) @ r.reshape(-1, r.shape[-1]).T


def impls_for(mode, with_code_form=True, with_compile=True):
    kw = dict(tau=1.0, teacher_tau=0.3, mode=mode)
    impls = {
        "dapo_fast[cpu]": lambda i: pseudo_label_contrastive_loss(*_args(i), **kw, backend="cpu"),
        "floor[matmul]": floor_matmul,
        "reference": lambda i: reference(*_args(i), 1.0, 0.3, mode, "mean"),
    }
    if with_compile:
        compiled = torch.compile(reference, dynamic=False)
        impls["reference[compile]"] = lambda i: compiled(*_args(i), 1.0, 0.3, mode, "mean")
    if with_code_form:
        impls["mpl_code_form"] = lambda i: code_form(*_args(i), 1.0, 0.3, mode, "mean")
    return impls


def _case(size, b, mode, quick, with_code_form=True, with_compile=True):
    impls = impls_for(mode, with_code_form, with_compile)
    baselines = [n for n in ("mpl_code_form", "reference", "reference[compile]", "floor[matmul]") if n in impls]
    return register(Case(
        op="pseudo_label_contrastive_loss", size=size, make_inputs=lambda: make_inputs(b), impls=impls,
        ours=["dapo_fast[cpu]"], baselines=baselines, grad_inputs=["phrase", "region"], quick=quick,
        measure_memory=True,
        note=f"B={b} K={K} Q={Q} D={D} mode={mode} fn density {FN_DENSITY}; floor[matmul] = the plain products",
    ))


_case("small-b16", 16, "fnc", quick=True)
_case("mpl-b64-none", 64, "none", quick=False)
_case("mpl-b64-fnc", 64, "fnc", quick=False)
# The code form needs ~2.6 GB of [B, B, Q, K] tensors here and the reference as much: ours and the floor only.
_case("mpl-b256-fnc", 256, "fnc", quick=False, with_code_form=True, with_compile=False)
