"""soft_iou forward+backward at PCNet's size: B=48 images, S=3 stages, P=40 mask proposals of
32x32, vs the eager reference and torch.compile of it."""
import torch

from dapo_fast.bench.cases.proposal_alignment import make_inputs
from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import soft_iou
from dapo_fast.ops._reference.soft_iou import soft_iou as reference


def _case(size, b, s, p, h, w, quick):
    compiled = torch.compile(reference, dynamic=False)
    impls = {
        "dapo_fast[cpu]": lambda i: soft_iou(i["response"], i["masks"], "half_dice", backend="cpu"),
        "reference": lambda i: reference(i["response"], i["masks"], "half_dice"),
        "reference[compile]": lambda i: compiled(i["response"], i["masks"], "half_dice"),
    }
    return register(Case(
        op="soft_iou", size=size, make_inputs=lambda: make_inputs(b, s, p, h, w), impls=impls,
        ours=["dapo_fast[cpu]"], baselines=["reference", "reference[compile]"], grad_inputs=["response"],
        bytes_moved=4 * b * s * h * w + b * p * h * w, quick=quick, note="bool masks, variant half_dice (PCNet's code)",
    ))


_case("pcnet", 48, 3, 40, 32, 32, quick=False)
_case("small", 4, 3, 10, 16, 16, quick=True)
