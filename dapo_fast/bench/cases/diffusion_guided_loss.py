"""diffusion_guided_loss (DAPO eq. 5) forward+backward at B=32, E=8, 64x64 and a small size, vs
the reference eager and under torch.compile.

Minimum traffic: the forward reads h and a once; forward+backward reads them once and writes the
gradient of h once, reported as GB/s of each."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import diffusion_guided_loss
from dapo_fast.ops._reference.diffusion_guided_loss import diffusion_guided_loss as reference


def make_inputs(batch, entities, height, width):
    torch.manual_seed(0)
    return {"h": torch.rand(batch, entities, height, width, requires_grad=True),
            "a": torch.rand(batch, entities, height, width),
            "valid": torch.ones(batch, entities, dtype=torch.bool)}


def _case(size, batch, entities, height, width, quick):
    compiled = torch.compile(reference, dynamic=False)
    map_bytes = 4 * batch * entities * height * width
    return register(Case(
        op="diffusion_guided_loss", size=size, make_inputs=lambda: make_inputs(batch, entities, height, width),
        impls={
            "dapo_fast[cpu]": lambda i: diffusion_guided_loss(i["h"], i["a"], i["valid"], "none", backend="cpu"),
            "reference": lambda i: reference(i["h"], i["a"], i["valid"]),
            "reference[compile]": lambda i: compiled(i["h"], i["a"], i["valid"]),
        },
        ours=["dapo_fast[cpu]"], baselines=["reference", "reference[compile]"], grad_inputs=["h"],
        bytes_moved=2 * map_bytes, bytes_moved_fwd_bwd=3 * map_bytes, quick=quick,
        note=f"B={batch} E={entities} {height}x{width}, gradient to h",
    ))


_case("b32-e8-64x64", 32, 8, 64, 64, quick=False)
_case("small", 4, 3, 32, 32, quick=True)
