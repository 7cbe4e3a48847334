"""heatmap_to_box on 1000 smooth multi-blob maps of 304x304 (WWbL's map size; issue 5's bar:
>= 5x the per-map OpenCV loop), plus pointing_game on the same maps resized to 500x375 images."""
import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import heatmap_to_box, pointing_game
from dapo_fast.ops._reference import grounding_metrics as reference


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


def opencv_resize_loop(maps, sizes):
    """WWbL's isCorrectHit form: cv2.resize each map to its image, argmax."""
    import cv2
    import numpy as np

    peaks = []
    for m, (h, w) in zip(maps.numpy(), sizes.tolist()):
        r = cv2.resize(m, (w, h))
        peaks.append(np.unravel_index(np.argmax(r), r.shape))
    return torch.tensor(peaks)


def _boxes_case(size, n, h, w, quick):
    def make():
        return {"maps": smooth_maps(n, h, w)}

    impls = {
        "dapo_fast[cpu]": lambda i: heatmap_to_box(i["maps"], backend="cpu"),
        "opencv_loop": lambda i: reference.heatmap_to_box(i["maps"]),
    }
    return register(Case(
        op="heatmap_to_box", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["opencv_loop"], bytes_moved=4 * n * h * w, quick=quick, note="reference = per-map OpenCV loop",
    ))


def _pointing_case(size, n, h, w, quick):
    def make():
        sizes = torch.tensor([[375, 500]]).expand(n, 2).contiguous()
        boxes = [torch.tensor([[100.0, 80.0, 300.0, 260.0]])] * n
        return {"maps": smooth_maps(n, h, w, seed=1), "sizes": sizes, "boxes": boxes}

    impls = {
        "dapo_fast[cpu]": lambda i: pointing_game(i["maps"], i["boxes"], i["sizes"], backend="cpu"),
        "opencv_loop": lambda i: opencv_resize_loop(i["maps"], i["sizes"]),
    }
    return register(Case(
        op="pointing_game", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["opencv_loop"], quick=quick, note="maps resized to 375x500 images",
    ))


_boxes_case("wwbl-1000", 1000, 304, 304, quick=False)
_boxes_case("small", 50, 64, 64, quick=True)
_pointing_case("wwbl-1000", 1000, 304, 304, quick=False)
