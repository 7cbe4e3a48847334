"""box_encode / box_decode (detectron2's Box2BoxTransform) at ReIR's size (B=10 images x P=5
phrases x J=50 proposals = 2500 rows per step) and at 100k rows, vs the reference, torch.compile
of it and torchvision's BoxCoder (the same transform)."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import box_decode, box_encode
from dapo_fast.ops._reference import box_coder as reference

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def random_boxes(rows, generator):
    xy = torch.rand(rows, 2, generator=generator) * 600
    wh = torch.rand(rows, 2, generator=generator) * 200 + 8
    return torch.cat([xy, xy + wh], 1)


def make_inputs(rows):
    g = torch.Generator().manual_seed(0)
    proposals, targets = random_boxes(rows, g), random_boxes(rows, g)
    return {"proposals": proposals.requires_grad_(), "targets": targets,
            "deltas": (torch.randn(rows, 4, generator=g) * 0.5).requires_grad_()}


def _torchvision_coder():
    try:
        from torchvision.models.detection._utils import BoxCoder
    except ImportError:
        return None
    return BoxCoder(WEIGHTS)


def _cases(size, rows, quick):
    coder = _torchvision_coder()
    compiled_encode = torch.compile(reference.box_encode, dynamic=False)
    compiled_decode = torch.compile(reference.box_decode, dynamic=False)
    encode = {
        "dapo_fast[cpu]": lambda i: box_encode(i["proposals"], i["targets"], backend="cpu"),
        "reference": lambda i: reference.box_encode(i["proposals"], i["targets"], WEIGHTS),
        "reference[compile]": lambda i: compiled_encode(i["proposals"], i["targets"], WEIGHTS),
    }
    decode = {
        "dapo_fast[cpu]": lambda i: box_decode(i["deltas"], i["proposals"], backend="cpu"),
        "reference": lambda i: reference.box_decode(i["deltas"], i["proposals"], WEIGHTS),
        "reference[compile]": lambda i: compiled_decode(i["deltas"], i["proposals"], WEIGHTS),
    }
    if coder is not None:
        encode["torchvision"] = lambda i: coder.encode_single(i["targets"], i["proposals"])
        decode["torchvision"] = lambda i: coder.decode_single(i["deltas"], i["proposals"])
    for op, impls, grad_inputs in (("box_encode", encode, ["proposals"]), ("box_decode", decode, ["deltas", "proposals"])):
        register(Case(
            op=op, size=size, make_inputs=lambda: make_inputs(rows), impls=impls, ours=["dapo_fast[cpu]"],
            baselines=[b for b in ("torchvision", "reference", "reference[compile]") if b in impls],
            grad_inputs=grad_inputs, bytes_moved=4 * 3 * 4 * rows, quick=quick,
            note=f"{rows} boxes, weights {WEIGHTS}",
        ))


_cases("reir-2500", 2500, quick=True)
_cases("100k", 100_000, quick=False)
