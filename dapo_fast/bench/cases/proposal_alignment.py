"""proposal_alignment forward+backward at PCNet's size: B=48 images, S=3 stages, P=40 mask
proposals of 32x32, vs the eager reference and torch.compile of it."""
import torch

from dapo_fast.bench.registry import Case, backend_impls, register, to_device
from dapo_fast.ops import proposal_alignment
from dapo_fast.ops._reference.proposal_alignment import proposal_alignment as reference


def make_inputs(b, s, p, h, w, device="cpu"):
    g = torch.Generator().manual_seed(0)
    return to_device({"response": torch.rand(b, s, h, w, generator=g).requires_grad_(),
                      "masks": torch.rand(b, p, h, w, generator=g) > 0.7,
                      "valid": torch.ones(b, p, dtype=torch.bool)}, device)


def _case(size, b, s, p, h, w, quick):
    compiled = torch.compile(reference, dynamic=False)
    impls = {
        **backend_impls(lambda i, backend: proposal_alignment(i["response"], i["masks"], i["valid"], backend=backend)),
        "reference": lambda i: reference(i["response"], i["masks"], i["valid"]),
        "reference[compile]": lambda i: compiled(i["response"], i["masks"], i["valid"]),
    }
    return register(Case(
        op="proposal_alignment", size=size, make_inputs=lambda device="cpu": make_inputs(b, s, p, h, w, device),
        impls=impls, ours=["dapo_fast[cpu]", "dapo_fast[cuda]"], baselines=["reference", "reference[compile]"],
        grad_inputs=["response"], bytes_moved=4 * b * s * h * w + b * p * h * w,
        # + read the output gradient, write the response gradient
        bytes_moved_fwd_bwd=8 * b * s * h * w + b * p * h * w + 4 * b * s * p,
        # per (stage, proposal, pixel): the product and the max; the backward routes one value per pair
        flops=2 * b * s * p * h * w, flops_fwd_bwd=2 * b * s * p * h * w + b * s * p, quick=quick,
        note="bool masks, all valid",
    ))


_case("pcnet", 48, 3, 40, 32, 32, quick=False)
_case("small", 4, 3, 10, 16, 16, quick=True)
