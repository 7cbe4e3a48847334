"""heatmap_to_box: the C++ kernel against the OpenCV reference (WWbL's procedure); the "wwbl"
protocol against WWbL's generate_bbox restated with the libraries it runs on."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

import dapo_fast
from dapo_fast.ops import box_accuracy, heatmap_to_box
from dapo_fast.ops._reference.heatmap_to_box import heatmap_to_box as reference
from dapo_fast.ops._reference.heatmap_to_box import wwbl_gray_table
from tests._helpers import compiled_matches_eager
from tests.ops._heatmaps import blobs, mixed_maps

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def test_200_random_maps_identical_boxes(seed):
    g = torch.Generator().manual_seed(seed)
    batches = [mixed_maps(100, 37, 45, g), mixed_maps(100, 24, 19, g)]  # 200 maps, odd sizes
    for maps in batches:
        for tozero in (False, True):
            want = reference(maps, 0.5, 0.5, tozero)
            got = heatmap_to_box(maps, tozero=tozero)
            assert torch.equal(got, want), (got != want).any(1).nonzero()


@pytest.mark.parametrize("rel,conf", [(0.3, 0.5), (0.8, 0.2), (0.0, 0.5), (1.0, 1.0), (0.5, 0.0)])
def test_thresholds(seed, rel, conf):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(30, 21, 17, g, dtype=torch.float64)
    torch.testing.assert_close(heatmap_to_box(maps, rel, conf), reference(maps, rel, conf), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(seed, dtype):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(24, 15, 23, g).to(dtype)
    assert torch.equal(heatmap_to_box(maps), reference(maps))


def test_non_contiguous_and_empty(seed):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(12, 16, 20, g)
    assert torch.equal(heatmap_to_box(maps.transpose(1, 2)), reference(maps.transpose(1, 2).contiguous()))
    assert heatmap_to_box(torch.empty(0, 5, 5)).shape == (0, 4)
    assert reference(torch.empty(0, 5, 5)).shape == (0, 4)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_hand_cases_and_tie_rule(backend):
    m = torch.zeros(3, 16, 16)
    m[:, 2, 2] = 1.0
    m[0, 10, 12] = 0.5           # confidence exactly 0.5 * max: dropped (strict >)
    m[1, 10, 12] = 0.5 + 1e-6    # just above: kept, the union spans both
    m[2, 10, 12] = 1.0           # equal confidences: both kept
    got = heatmap_to_box(m, backend=backend)
    assert got.tolist() == [[2, 2, 3, 3], [2, 2, 13, 11], [2, 2, 13, 11]]
    flat = torch.full((1, 5, 7), 3.0)
    assert heatmap_to_box(flat, backend=backend).tolist() == [[0, 0, 7, 5]]  # flat: every pixel is the peak
    # 8-connectivity: a diagonal chain is one component
    diag = torch.zeros(1, 6, 6)
    for i in range(4):
        diag[0, i, i] = 1.0
    diag[0, 5, 0] = 0.9
    # the chain's box mean is 4/16 = 0.25, the lone pixel's 0.9: the chain is dropped (0.25 < 0.45)
    assert heatmap_to_box(diag, backend=backend).tolist() == [[0, 5, 1, 6]]
    assert heatmap_to_box(diag, conf_threshold=0.2, backend=backend).tolist() == [[0, 0, 4, 6]]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_tozero_changes_confidence(backend):
    m = torch.zeros(1, 10, 10)
    m[0, 1:4, 1:4] = 1.0
    m[0, 2, 2] = 0.45     # a hole below the threshold inside the block
    m[0, 7, 7] = 1.0      # lone pixel: confidence 1
    # block confidence: (8 + 0.45) / 9 = 0.939 as heat, 8 / 9 = 0.889 with tozero; cut at 0.9
    assert heatmap_to_box(m, 0.5, 0.9, backend=backend).tolist() == [[1, 1, 8, 8]]
    assert heatmap_to_box(m, 0.5, 0.9, tozero=True, backend=backend).tolist() == [[7, 7, 8, 8]]


def test_nan_map_gives_nan_box():
    m = torch.rand(2, 8, 8)
    m[1, 3, 3] = float("nan")
    out = heatmap_to_box(m)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()


def test_opcheck(seed):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(6, 9, 13, g)
    torch.library.opcheck(torch.ops.dapo_fast.heatmap_to_box.default, (maps, 0.5, 0.5, False))
    torch.library.opcheck(torch.ops.dapo_fast.heatmap_to_box.default, (maps[:0], 0.5, 0.5, True))
    table = torch.from_numpy(wwbl_gray_table())
    for batch in (maps, maps[:0]):
        torch.library.opcheck(torch.ops.dapo_fast.heatmap_to_box_wwbl.default, (batch, table, 0.5, 0.5, 0.05))


def test_bad_inputs():
    with pytest.raises(ValueError, match="heatmaps"):
        heatmap_to_box(torch.rand(4, 4))
    with pytest.raises(TypeError, match="heatmaps"):
        heatmap_to_box(torch.ones(1, 4, 4, dtype=torch.int64))
    with pytest.raises(ValueError, match="rel_threshold"):
        heatmap_to_box(torch.rand(1, 4, 4), rel_threshold=1.5)
    with pytest.raises(ValueError, match="conf_threshold"):
        heatmap_to_box(torch.rand(1, 4, 4), conf_threshold=-0.1)
    with pytest.raises(ValueError, match="heatmaps"):
        heatmap_to_box(torch.rand(2, 0, 4))
    with pytest.raises(RuntimeError, match="heatmaps"):
        torch.ops.dapo_fast.heatmap_to_box(torch.rand(4, 4), 0.5, 0.5, False)
    with pytest.raises(ValueError, match="protocol"):
        heatmap_to_box(torch.rand(1, 4, 4), protocol="opencv")
    with pytest.raises(RuntimeError, match="gray_table"):
        torch.ops.dapo_fast.heatmap_to_box_wwbl(torch.rand(1, 4, 4), torch.zeros(255, dtype=torch.uint8), 0.5, 0.5, 0.05)
    with pytest.raises(RuntimeError, match="nms_threshold"):
        torch.ops.dapo_fast.heatmap_to_box_wwbl(torch.rand(1, 4, 4), torch.zeros(256, dtype=torch.uint8), 0.5, 0.5, -1.0)


@pytest.mark.slow
def test_compile_fullgraph_eval(seed):
    """DAPO / WWbL bbox accuracy as an evaluation step, compiled: heatmaps resized to the image,
    one box per map, IoU >= 0.5 with the ground truth. The maps are multiples of 2**-10 and the
    resize doubles them (weights 1/4, 3/4), so the resized values are exact in float32 whatever
    order inductor's resize sums in: the compiled boxes must then equal the eager ones exactly."""
    maps = (mixed_maps(10, 12, 16, torch.Generator().manual_seed(seed)) * 1024).round() / 1024
    want_boxes = reference(F.interpolate(maps[:, None], size=(24, 32), mode="bilinear", align_corners=False)[:, 0])
    gt = torch.where(torch.arange(10)[:, None] % 2 == 0, want_boxes, torch.tensor([0.0, 0.0, 1.0, 1.0]))

    def evaluate(heatmaps, gt_boxes):
        resized = F.interpolate(heatmaps[:, None], size=(24, 32), mode="bilinear", align_corners=False)[:, 0]
        boxes = heatmap_to_box(resized)
        return boxes, box_accuracy(boxes, gt_boxes[:, None])

    (boxes, hits), _ = compiled_matches_eager(evaluate, maps, gt)
    assert torch.equal(boxes, want_boxes)
    assert hits[::2].all()


# ---- protocol="wwbl": WWbL's generate_bbox + union (utils_grounding.py), box for box ----

def wwbl_generate_bbox(cam, threshold=0.5, nms_threshold=0.05, max_drop_th=0.5):
    """WWbL's generate_bbox restated from its utils_grounding.py, on the libraries it calls:
    matplotlib's colormap, OpenCV's gray conversion / threshold / contours, torchvision's NMS."""
    import cv2
    import matplotlib

    cam = cam.astype("float")
    with np.errstate(invalid="ignore"):  # a flat map: 0 / 0, the colormap's "bad" colour
        cam = (cam - cam.min()) / (cam - cam.min()).max()
    rgb = (matplotlib.colormaps["cubehelix"](cam)[..., :3].astype("float32") * 255.0).astype("uint8")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    _, kept = cv2.threshold(gray, int(threshold * np.max(gray)), 255, cv2.THRESH_TOZERO)
    contours, _ = cv2.findContours(kept, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
    if len(contours) == 0:
        return [[0, 0, 1, 1, 0], [0, 0, 1, 1, 0]]
    proposals = [cv2.boundingRect(c) for c in contours]
    conf = [kept[y:y + h, x:x + w].mean() / 255 for (x, y, w, h) in proposals]
    index = torchvision.ops.nms(torch.tensor(proposals).float(), torch.tensor(conf).float(), nms_threshold)
    rows = torch.cat((torch.tensor(proposals).float()[index], torch.tensor(conf)[index].unsqueeze(1)), 1).tolist()
    return [(x, y, x + w, y + h, c) for (x, y, w, h, c) in rows if c > max_drop_th * np.max(conf)]


def wwbl_box(cam, threshold=0.5, max_drop_th=0.5):
    boxes = np.array(wwbl_generate_bbox(cam, threshold, max_drop_th=max_drop_th))[:, :4]
    return [float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())]


def noisy_and_smooth_maps(count, generator):
    """count maps of random sizes: uniform noise, blobs plus noise, and smooth blob maps."""
    maps = []
    for i in range(count):
        h, w = (int(v) for v in torch.randint(5, 48, (2,), generator=generator))
        kind = i % 3
        if kind == 0:
            m = torch.rand(h, w, generator=generator)
        else:
            m = mixed_maps(1, h, w, generator)[0] if kind == 1 else blobs(h, w, 1 + i % 4, generator)
            if kind == 1:
                m = m + 0.3 * torch.rand(h, w, generator=generator) * m.abs().max()
        maps.append(m.float())
    return maps


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("threshold,max_drop", [(0.5, 0.5), (0.3, 0.8), (0.7, 0.2)])
def test_wwbl_protocol_is_wwbls_generate_bbox_box_for_box(seed, backend, threshold, max_drop):
    g = torch.Generator().manual_seed(seed)
    for m in noisy_and_smooth_maps(60, g):
        got = heatmap_to_box(m[None], threshold, max_drop, protocol="wwbl", backend=backend)[0]
        assert got.tolist() == wwbl_box(m.numpy(), threshold, max_drop), tuple(m.shape)


def test_wwbl_gray_table_is_matplotlib_and_opencv():
    import cv2

    from dapo_fast.ops._reference.heatmap_to_box import wwbl_gray

    ramp = np.linspace(0, 1, 4097)[None]
    rgb = (__import__("matplotlib").colormaps["cubehelix"](ramp)[..., :3].astype("float32") * 255.0).astype("uint8")
    assert np.array_equal(wwbl_gray(ramp), cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    assert wwbl_gray_table()[0] == 0 and wwbl_gray_table()[255] == 255


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_wwbl_protocol_hole_contours_and_flat_maps(backend):
    ring = torch.zeros(1, 12, 12)
    ring[0, 2:9, 2:9] = 1.0
    ring[0, 4:7, 4:7] = 0.0   # a hole: its contour is a box (3, 3)-(8, 8) of its own
    ring[0, 10, 10] = 0.9     # a lone pixel, kept: gray above half the maximum
    for m in (ring, torch.full((1, 5, 7), 3.0), torch.rand(1, 1, 1), torch.rand(1, 1, 9)):
        got = heatmap_to_box(m, protocol="wwbl", backend=backend)[0].tolist()
        assert got == wwbl_box(m[0].numpy())
    # rel_threshold 1: no gray value above the cut, no contour, WWbL's default box
    assert heatmap_to_box(ring, 1.0, protocol="wwbl", backend=backend)[0].tolist() == wwbl_box(ring[0].numpy(), 1.0)
    assert heatmap_to_box(torch.full((1, 5, 7), 3.0), protocol="wwbl", backend=backend).tolist() == [[0, 0, 1, 1]]
    nan = torch.rand(1, 6, 6)
    nan[0, 1, 1] = float("nan")
    assert torch.isnan(heatmap_to_box(nan, protocol="wwbl", backend=backend)).all()


@pytest.mark.cuda
def test_cuda_matches_reference(seed):
    maps = mixed_maps(60, 37, 45, torch.Generator().manual_seed(seed))
    assert torch.equal(heatmap_to_box(maps.cuda()).cpu(), reference(maps))
    torch.library.opcheck(torch.ops.dapo_fast.heatmap_to_box.default, (maps.cuda(), 0.5, 0.5, False))
    # protocol="wwbl": boxed on the host (torch's CPU sort orders its NMS), returned on the device
    got = heatmap_to_box(maps.cuda(), protocol="wwbl")
    assert got.is_cuda and torch.equal(got.cpu(), reference(maps, protocol="wwbl"))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_not_differentiable_and_says_so(backend):
    """The box is piecewise constant in the heat: the result never requires grad (the C++ op used to
    return a tensor that required grad and whose backward gave no gradient)."""
    maps = torch.rand(2, 5, 6, requires_grad=True)
    assert not heatmap_to_box(maps, backend=backend).requires_grad


@pytest.mark.parametrize("protocol", ["components", "wwbl"])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_non_finite_map_gives_a_nan_box(backend, protocol):
    # the reference used to fail (min() of an empty sequence) on a map with +Inf, the kernel
    # returned a box for one with -Inf; the wwbl kernel read its gray table out of bounds
    maps = torch.rand(3, 5, 6, dtype=torch.float64)
    maps[0, 2, 3], maps[1, 0, 0] = float("inf"), -float("inf")
    out = heatmap_to_box(maps, 0.0, 1.0, protocol=protocol, backend=backend)
    if protocol == "wwbl":  # conf_threshold 1 keeps no rectangle: WWbL's default box, on every backend
        assert out[2].tolist() == [0.0, 0.0, 1.0, 1.0]
    assert torch.isnan(out[:2]).all() and torch.isfinite(out[2]).all()


@pytest.mark.parametrize("name, value", [("rel_threshold", None), ("conf_threshold", "0.5"), ("tozero", "no"),
                                         ("rel_threshold", float("nan"))])
def test_scalar_arguments_are_checked(name, value):
    args = dict(rel_threshold=0.5, conf_threshold=0.5, tozero=False)
    args[name] = value
    with pytest.raises((TypeError, ValueError), match=name):
        heatmap_to_box(torch.rand(2, 4, 4), **args)
