"""MPL's false-negative retrieval at Flickr30k sizes: B images x K=100 regions, D_raw=2048 detector
features (B=64 scaled to this machine, B=256 the paper's batch; the code form's [B, B, K, K]
similarity is 2.6 GB there). ``floor[matmul]`` is the plain [BK, D] @ [D, BK] product."""
import torch

from dapo_fast.bench.registry import Case, backend_impls, register, to_device
from dapo_fast.ops import false_negative_mask
from dapo_fast.ops._reference.false_negative_mask import false_negative_mask as reference
from dapo_fast.ops._reference.false_negative_mask import false_negative_mask_mpl_code_form as code_form

K, D_RAW, THRESHOLD = 100, 2048, 0.95


def make_inputs(b, k=K, d=D_RAW, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = torch.relu(torch.randn(b, k, d, generator=g))  # detector features are post-ReLU
    return {"region_feats": feats, "region_valid": torch.rand(b, k, generator=g) < 0.9}


def _case(size, b, quick, with_code_form=True):
    impls = {
        **backend_impls(lambda i, backend: false_negative_mask(i["region_feats"], i["region_valid"], THRESHOLD,
                                                               backend=backend), ("cpu", "cuda", "triton")),
        "floor[matmul]": lambda i: (lambda f: f @ f.T)(i["region_feats"].reshape(-1, i["region_feats"].shape[-1])),
    }
    if with_code_form:
        impls["mpl_code_form"] = lambda i: code_form(i["region_feats"], i["region_valid"], THRESHOLD)
        impls["reference"] = lambda i: reference(i["region_feats"], i["region_valid"], THRESHOLD)
    return register(Case(
        op="false_negative_mask", size=size, make_inputs=lambda device="cpu": to_device(make_inputs(b), device),
        impls=impls, ours=["dapo_fast[cpu]", "dapo_fast[cuda]", "dapo_fast[triton]"],
        baselines=[n for n in ("mpl_code_form", "reference", "floor[matmul]") if n in impls], quick=quick,
        # read the features and validity, write the [B, B, K] mask; the [BK, BK] similarity product,
        # the row normalisation and one comparison per pair
        bytes_moved=4 * b * K * D_RAW + b * K + b * b * K,
        flops=2 * (b * K) ** 2 * D_RAW + 3 * b * K * D_RAW + (b * K) ** 2,
        note=f"B={b} K={K} D={D_RAW} threshold {THRESHOLD}; forward only (frozen features)",
    ))


_case("small-b16", 16, quick=True)
_case("mpl-b64", 64, quick=False)
_case("mpl-b256", 256, quick=False, with_code_form=False)
