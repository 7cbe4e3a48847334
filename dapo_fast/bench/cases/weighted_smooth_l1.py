"""weighted_smooth_l1 (sum) forward+backward at ReIR's size (B=10 x P=5 x J=50 deltas, one weight
per box) and 64 x 5 x 300, vs the reference, torch.compile of it and torch's smooth_l1_loss times
the weight."""
import torch
import torch.nn.functional as F

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import weighted_smooth_l1
from dapo_fast.ops._reference.weighted_smooth_l1 import weighted_smooth_l1 as reference

BETA = 1.0 / 9  # detectron2's default for box regression


def make_inputs(shape):
    g = torch.Generator().manual_seed(0)
    return {"input": torch.randn(*shape, 4, generator=g).requires_grad_(), "target": torch.randn(*shape, 4, generator=g),
            "weight": (torch.rand(*shape, generator=g) > 0.5).float()}


def _case(size, shape, quick):
    compiled = torch.compile(reference, dynamic=False)
    impls = {
        "dapo_fast[cpu]": lambda i: weighted_smooth_l1(i["input"], i["target"], i["weight"], BETA, backend="cpu"),
        "reference": lambda i: reference(i["input"], i["target"], i["weight"][..., None], BETA),
        "reference[compile]": lambda i: compiled(i["input"], i["target"], i["weight"][..., None], BETA),
        "torch_smooth_l1": lambda i: (i["weight"][..., None] * F.smooth_l1_loss(i["input"], i["target"], reduction="none",
                                                                                beta=BETA)).sum(),
    }
    numel = 4 * torch.Size(shape).numel()
    return register(Case(
        op="weighted_smooth_l1", size=size, make_inputs=lambda: make_inputs(shape), impls=impls,
        ours=["dapo_fast[cpu]"], baselines=["torch_smooth_l1", "reference", "reference[compile]"], grad_inputs=["input"],
        bytes_moved=4 * (2 * numel + numel // 4), quick=quick, note=f"deltas {tuple(shape) + (4,)}, beta 1/9, sum",
    ))


_case("reir", (10, 5, 50), quick=True)
_case("b64-p5-j300", (64, 5, 300), quick=False)
