"""self_taught_targets at ReIR's size: B=10 images, P=5 phrases, J=50 proposals, vs the reference
and the per-phrase loop of the paper's code form."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import box_encode, self_taught_targets
from dapo_fast.ops._reference.box_iou import box_iou
from dapo_fast.ops._reference.self_taught_targets import self_taught_targets as reference


def per_phrase_loop(boxes, scores, iou_threshold=0.6, score_gap=0.1):
    """ReIR's form: per image and phrase, IoU of every proposal with the pseudo ground truth."""
    b, j = boxes.shape[:2]
    p = scores.shape[1]
    deltas = torch.zeros(b, p, j, 4)
    weights = torch.zeros(b, p, j)
    for i in range(b):
        for q in range(p):
            best = int(scores[i, q].argmax())
            iou = box_iou(boxes[i, best][None], boxes[i])[0]
            keep = (iou >= iou_threshold) & (scores[i, q, best] - scores[i, q] >= score_gap)
            keep[best] = False
            idx = keep.nonzero()[:, 0]
            deltas[i, q, idx] = box_encode(boxes[i, idx], boxes[i, best].expand(len(idx), 4), backend="reference")
            weights[i, q, idx] = 1
    return deltas, weights


def _case(size, b, p, j, quick):
    def make():
        g = torch.Generator().manual_seed(0)
        centres = torch.rand(b, 4, 2, generator=g) * torch.tensor([800.0, 600.0])
        pick = torch.randint(0, 4, (b, j), generator=g)
        c = torch.gather(centres, 1, pick[..., None].expand(b, j, 2)) + torch.randn(b, j, 2, generator=g) * 8
        wh = 120 + torch.randn(b, j, 2, generator=g) * 10
        return {"boxes": torch.cat([c - wh / 2, c + wh / 2], -1), "scores": torch.rand(b, p, j, generator=g)}

    impls = {
        "dapo_fast[cpu]": lambda i: self_taught_targets(i["boxes"], i["scores"], backend="cpu"),
        "reference": lambda i: reference(i["boxes"], i["scores"]),
        "per_phrase_loop": lambda i: per_phrase_loop(i["boxes"], i["scores"]),
    }
    return register(Case(
        op="self_taught_targets", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["per_phrase_loop", "reference"], quick=quick, note="clustered proposals, IoU 0.6, gap 0.1",
    ))


_case("reir", 10, 5, 50, quick=True)
