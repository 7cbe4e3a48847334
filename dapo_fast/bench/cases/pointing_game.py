"""pointing_game on 1000 smooth multi-blob maps of 304x304 (WWbL's map size) resized to 500x375
images, vs WWbL's isCorrectHit form (cv2.resize of each map, argmax); pointing_game_masks
(PCNet's PointM) on 200 such maps of 80x80 against 375x500 masks, vs F.interpolate + argmax +
lookup."""
import torch
import torch.nn.functional as F

from dapo_fast.bench.cases.heatmap_to_box import smooth_maps
from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import pointing_game, pointing_game_masks


def opencv_resize_loop(maps, sizes):
    """WWbL's isCorrectHit form: cv2.resize each map to its image, argmax."""
    import cv2
    import numpy as np

    peaks = []
    for m, (h, w) in zip(maps.numpy(), sizes.tolist()):
        r = cv2.resize(m, (w, h))
        peaks.append(np.unravel_index(np.argmax(r), r.shape))
    return torch.tensor(peaks)


def _case(size, n, h, w, quick):
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


def interpolate_argmax_lookup(maps, masks):
    """PointM the plain way: F.interpolate every map to the mask size, argmax, look the mask up."""
    n, height, width = masks.shape
    resized = F.interpolate(maps[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    flat = resized.reshape(n, -1).argmax(1)
    return masks.reshape(n, -1)[torch.arange(n), flat]


def _masks_case(size, n, h, w, quick):
    def make():
        masks = torch.zeros(n, 375, 500, dtype=torch.bool)
        masks[:, 80:260, 100:300] = True
        return {"maps": smooth_maps(n, h, w, seed=1), "masks": masks}

    impls = {
        "dapo_fast[cpu]": lambda i: pointing_game_masks(i["maps"], i["masks"], backend="cpu"),
        "interpolate_argmax": lambda i: interpolate_argmax_lookup(i["maps"], i["masks"]),
    }
    return register(Case(
        op="pointing_game_masks", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["interpolate_argmax"], quick=quick, note="maps resized to 375x500 masks",
    ))


_case("wwbl-1000", 1000, 304, 304, quick=False)
_case("small", 50, 64, 64, quick=True)
_masks_case("b200-80x80", 200, 80, 80, quick=False)
_masks_case("small", 20, 64, 64, quick=True)
