"""box_encode / box_decode (detectron2's Box2BoxTransform) at ReIR's size (B=10 images x P=5
phrases x J=50 proposals = 2500 rows per step) and at 100k rows, vs the reference, torch.compile
of it and torchvision's BoxCoder (the same transform)."""
import torch

from dapo_fast.bench.registry import Case, backend_impls, register, to_device
from dapo_fast.ops import box_decode, box_encode
from dapo_fast.ops._reference import box_coder as reference

WEIGHTS = (10.0, 10.0, 5.0, 5.0)


def random_boxes(rows, generator):
    xy = torch.rand(rows, 2, generator=generator) * 600
    wh = torch.rand(rows, 2, generator=generator) * 200 + 8
    return torch.cat([xy, xy + wh], 1)


def make_inputs(rows, device="cpu"):
    g = torch.Generator().manual_seed(0)
    proposals, targets = random_boxes(rows, g), random_boxes(rows, g)
    return to_device({"proposals": proposals.requires_grad_(), "targets": targets,
                      "deltas": (torch.randn(rows, 4, generator=g) * 0.5).requires_grad_()}, device)


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
        **backend_impls(lambda i, b: box_encode(i["proposals"], i["targets"], backend=b)),
        "reference": lambda i: reference.box_encode(i["proposals"], i["targets"], WEIGHTS),
        "reference[compile]": lambda i: compiled_encode(i["proposals"], i["targets"], WEIGHTS),
    }
    decode = {
        **backend_impls(lambda i, b: box_decode(i["deltas"], i["proposals"], backend=b)),
        "reference": lambda i: reference.box_decode(i["deltas"], i["proposals"], WEIGHTS),
        "reference[compile]": lambda i: compiled_decode(i["deltas"], i["proposals"], WEIGHTS),
    }
    if coder is not None:
        encode["torchvision"] = lambda i: coder.encode_single(i["targets"], i["proposals"])
        decode["torchvision"] = lambda i: coder.decode_single(i["deltas"], i["proposals"])
    # per row: two boxes' centres and sizes, then 2 differences, 4 divisions, 2 logs and 4 weight
    # multiplications (encode) or 4 divisions, 2 clamps, 2 exps and the corner arithmetic (decode);
    # the backward about twice the forward
    for op, impls, grad_inputs, flops in (("box_encode", encode, ["proposals"], 24 * rows),
                                          ("box_decode", decode, ["deltas", "proposals"], 28 * rows)):
        register(Case(
            op=op, size=size, make_inputs=lambda device="cpu": make_inputs(rows, device), impls=impls,
            ours=["dapo_fast[cpu]", "dapo_fast[cuda]"],
            baselines=[b for b in ("torchvision", "reference", "reference[compile]") if b in impls],
            grad_inputs=grad_inputs, bytes_moved=4 * 3 * 4 * rows,
            bytes_moved_fwd_bwd=4 * 4 * rows * (3 + 1 + len(grad_inputs)), flops=flops, flops_fwd_bwd=3 * flops,
            quick=quick,
            note=f"{rows} boxes, weights {WEIGHTS}",
        ))


_cases("reir-2500", 2500, quick=True)
_cases("100k", 100_000, quick=False)
