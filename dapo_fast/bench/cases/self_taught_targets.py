"""self_taught_targets at ReIR's size: B=10 images, P=5 phrases, J=50 proposals, vs the reference
and the per-phrase loop of the paper's code form."""
import torch

from dapo_fast.bench.registry import Case, backend_impls, register, to_device
from dapo_fast.ops import self_taught_targets
from dapo_fast.ops._reference.self_taught_targets import self_taught_targets as reference
from dapo_fast.ops.self_taught_targets import self_taught_targets_reir_code_form


def _case(size, b, p, j, quick):
    def make(device="cpu"):
        g = torch.Generator().manual_seed(0)
        centres = torch.rand(b, 4, 2, generator=g) * torch.tensor([800.0, 600.0])
        pick = torch.randint(0, 4, (b, j), generator=g)
        c = torch.gather(centres, 1, pick[..., None].expand(b, j, 2)) + torch.randn(b, j, 2, generator=g) * 8
        wh = 120 + torch.randn(b, j, 2, generator=g) * 10
        return to_device({"boxes": torch.cat([c - wh / 2, c + wh / 2], -1), "scores": torch.rand(b, p, j, generator=g)},
                         device)

    impls = {
        **backend_impls(lambda i, backend: self_taught_targets(i["boxes"], i["scores"], backend=backend)),
        "reference": lambda i: reference(i["boxes"], i["scores"]),
        "per_phrase_loop": lambda i: self_taught_targets_reir_code_form(i["boxes"], i["scores"]),
    }
    return register(Case(
        op="self_taught_targets", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]", "dapo_fast[cuda]"],
        baselines=["per_phrase_loop", "reference"], quick=quick,
        # read boxes and scores, write deltas and weights; per (phrase, proposal) an IoU (12), the
        # score gap and tests (4) and a box encoding (24)
        bytes_moved=4 * (4 * b * j + b * p * j + 5 * b * p * j), flops=40 * b * p * j,
        note="clustered proposals, IoU 0.6, gap 0.1",
    ))


_case("reir", 10, 5, 50, quick=True)
