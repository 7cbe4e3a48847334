"""attention_guidance_loss (DAPO eq. 3) forward+backward at B=32, E=8, 64x64 and a small size, vs
the vectorised pairwise reference eager and under torch.compile, and the literal double loop.

Minimum traffic: the forward reads h and a once; forward+backward reads them once and writes the
gradient of a once (the fused kernels' design), reported as GB/s of each."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import attention_guidance_loss
from dapo_fast.ops._reference import attention_guidance_loss as reference


def make_inputs(batch, entities, height, width):
    torch.manual_seed(0)
    return {"h": torch.rand(batch, entities, height, width),
            "a": torch.rand(batch, entities, height, width, requires_grad=True),
            "valid": torch.ones(batch, entities, dtype=torch.bool)}


def _case(size, batch, entities, height, width, quick):
    pairwise = reference.attention_guidance_loss_pairwise_vectorised
    compiled_pairwise = torch.compile(pairwise, dynamic=False)
    map_bytes = 4 * batch * entities * height * width
    return register(Case(
        op="attention_guidance_loss", size=size, make_inputs=lambda: make_inputs(batch, entities, height, width),
        impls={
            "dapo_fast[cpu]": lambda i: attention_guidance_loss(i["h"], i["a"], i["valid"], backend="cpu"),
            "reference[pairwise]": lambda i: pairwise(i["h"], i["a"], i["valid"]),
            "reference[pairwise,compile]": lambda i: compiled_pairwise(i["h"], i["a"], i["valid"]),
            "reference[double-loop]": lambda i: reference.attention_guidance_loss(i["h"], i["a"], i["valid"]),
        },
        ours=["dapo_fast[cpu]"], baselines=["reference[pairwise]", "reference[pairwise,compile]"],
        grad_inputs=["a"], bytes_moved=2 * map_bytes, bytes_moved_fwd_bwd=3 * map_bytes, quick=quick,
        note=f"B={batch} E={entities} {height}x{width}, gradient to a",
    ))


_case("b32-e8-64x64", 32, 8, 64, 64, quick=False)
_case("small", 4, 3, 32, 32, quick=True)
