"""heatmap_to_box on 1000 smooth multi-blob maps of 304x304 (WWbL's map size) vs the per-map
OpenCV loop of the original code (the reference)."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import heatmap_to_box
from dapo_fast.ops._reference.heatmap_to_box import heatmap_to_box as reference


def smooth_maps(n, h, w, seed=0):
    """Sums of 1-4 Gaussian blobs per map, built separably (cheap at 1000 x 304 x 304)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(h, dtype=torch.float32)
    x = torch.arange(w, dtype=torch.float32)
    maps = torch.zeros(n, h, w)
    for _ in range(4):
        cy = torch.rand(n, 1, generator=g) * h
        cx = torch.rand(n, 1, generator=g) * w
        sy = 4 + torch.rand(n, 1, generator=g) * h / 6
        sx = 4 + torch.rand(n, 1, generator=g) * w / 6
        amp = torch.rand(n, 1, 1, generator=g)
        gy = torch.exp(-((y[None] - cy) / sy) ** 2 / 2)
        gx = torch.exp(-((x[None] - cx) / sx) ** 2 / 2)
        maps += amp * gy[:, :, None] * gx[:, None, :]
    return maps


def _case(size, n, h, w, quick):
    def make():
        return {"maps": smooth_maps(n, h, w)}

    impls = {
        "dapo_fast[cpu]": lambda i: heatmap_to_box(i["maps"], backend="cpu"),
        "opencv_loop": lambda i: reference(i["maps"]),
    }
    return register(Case(
        op="heatmap_to_box", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["opencv_loop"], bytes_moved=4 * n * h * w, quick=quick, note="reference = per-map OpenCV loop",
    ))


_case("wwbl-1000", 1000, 304, 304, quick=False)
_case("small", 50, 64, 64, quick=True)
