"""box_iou, batched, at ReIR's self-taught size (B=10 images x 50 x 50 proposals) and 1000 x 1000
boxes, vs torchvision.ops.box_iou (one call per image when batched) and the reference; and
box_accuracy over 1000 maps with 1-3 ground-truth boxes each, vs the per-map reference loop."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import box_accuracy, box_iou
from dapo_fast.ops._reference import box_iou as reference


def random_boxes(*shape, generator):
    xy = torch.rand(*shape, 2, generator=generator) * 500
    wh = torch.rand(*shape, 2, generator=generator) * 150 + 4
    return torch.cat([xy, xy + wh], -1)


def _iou_case(size, batch, n, m, quick):
    def make():
        g = torch.Generator().manual_seed(0)
        return {"a": random_boxes(batch, n, generator=g), "b": random_boxes(batch, m, generator=g)}

    impls = {
        "dapo_fast[cpu]": lambda i: box_iou(i["a"], i["b"], backend="cpu"),
        "reference": lambda i: reference.box_iou(i["a"], i["b"]),
    }
    try:
        import torchvision

        impls["torchvision"] = lambda i: torch.stack([torchvision.ops.box_iou(a, b) for a, b in zip(i["a"], i["b"])])
    except ImportError:
        pass
    return register(Case(
        op="box_iou", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=[b for b in ("torchvision", "reference") if b in impls], bytes_moved=4 * batch * (4 * (n + m) + n * m),
        quick=quick, note=f"[{batch}, {n}, 4] x [{batch}, {m}, 4]; forward only (no kernel backward)",
    ))


def _accuracy_case(size, n, quick):
    def make():
        g = torch.Generator().manual_seed(1)
        pred = random_boxes(n, generator=g)
        gts = [random_boxes(1 + i % 3, generator=g) for i in range(n)]
        return {"pred": pred, "gts": gts}

    impls = {
        "dapo_fast[cpu]": lambda i: box_accuracy(i["pred"], i["gts"]),
        "reference_loop": lambda i: reference.box_accuracy(i["pred"], i["gts"]),
    }
    return register(Case(
        op="box_accuracy", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["reference_loop"], quick=quick, note=f"{n} maps, 1-3 ground-truth boxes each, IoU 0.5",
    ))


_iou_case("reir-b10-50x50", 10, 50, 50, quick=True)
_iou_case("1000x1000", 1, 1000, 1000, quick=False)
_accuracy_case("wwbl-1000", 1000, quick=True)
