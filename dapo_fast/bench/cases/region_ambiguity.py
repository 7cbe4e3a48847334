"""region_ambiguity forward+backward at PCNet's size: B=48 images, S=3 stages, P=40 mask
proposals of 32x32, vs the eager reference, torch.compile of it and the paper's code form."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import region_ambiguity
from dapo_fast.ops._reference.region_ambiguity import region_ambiguity as reference


def pcnet_loop(response, masks, valid, variant="iou", eps=1e-5):
    """The paper's code form: a Python loop over samples and stages."""
    out = []
    for b in range(response.shape[0]):
        m = masks[b][valid[b]].to(response.dtype)
        row = []
        for s in range(response.shape[1]):
            r = response[b, s]
            scores = (r[None] * m).flatten(1).amax(1)
            f = int(scores.argmax())
            fg = m[f]
            bg = torch.cat([m[:f], m[f + 1:]]).amax(0) if m.shape[0] > 1 else torch.zeros_like(r)
            ious = []
            for mm in (fg, bg):
                inter = (r * mm).sum()
                total = r.sum() + mm.sum()
                ious.append(inter / ((total - inter if variant == "iou" else total) + eps))
            row.append(1 - (ious[0] - ious[1]))
        out.append(torch.stack(row))
    return torch.stack(out), None


def _case(size, b, s, p, h, w, quick):
    def make():
        g = torch.Generator().manual_seed(0)
        response = torch.rand(b, s, h, w, generator=g).requires_grad_()
        masks = torch.rand(b, p, h, w, generator=g) > 0.7
        valid = torch.ones(b, p, dtype=torch.bool)
        return {"response": response, "masks": masks, "valid": valid}

    compiled = torch.compile(reference, dynamic=False)
    impls = {
        "dapo_fast[cpu]": lambda i: region_ambiguity(i["response"], i["masks"], i["valid"], backend="cpu"),
        "reference": lambda i: reference(i["response"], i["masks"], i["valid"]),
        "reference[compile]": lambda i: compiled(i["response"], i["masks"], i["valid"]),
        "pcnet_loop": lambda i: pcnet_loop(i["response"], i["masks"], i["valid"]),
    }
    return register(Case(
        op="region_ambiguity", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["reference", "reference[compile]", "pcnet_loop"], grad_inputs=["response"],
        bytes_moved=4 * b * s * h * w * 2 + b * p * h * w, quick=quick,
        note="bool masks, all valid, variant iou",
    ))


_case("pcnet", 48, 3, 40, 32, 32, quick=False)
_case("small", 4, 3, 10, 16, 16, quick=True)
