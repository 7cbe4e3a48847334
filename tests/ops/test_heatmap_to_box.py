"""heatmap_to_box: the C++ kernel against the OpenCV reference (WWbL's procedure)."""
import pytest
import torch
import torch.nn.functional as F

import dapo_fast
from dapo_fast.ops import box_accuracy, heatmap_to_box
from dapo_fast.ops._reference.heatmap_to_box import heatmap_to_box as reference
from tests._helpers import compiled_matches_eager
from tests.ops._heatmaps import mixed_maps

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


@pytest.mark.slow
def test_compile_fullgraph_eval(seed):
    """DAPO / WWbL bbox accuracy as an evaluation step, compiled: heatmaps resized to the image,
    one box per map, IoU >= 0.5 with the ground truth."""
    maps = mixed_maps(10, 12, 16, torch.Generator().manual_seed(seed))
    want_boxes = reference(F.interpolate(maps[:, None], size=(30, 40), mode="bilinear", align_corners=False)[:, 0])
    gt = torch.where(torch.arange(10)[:, None] % 2 == 0, want_boxes, torch.tensor([0.0, 0.0, 1.0, 1.0]))

    def evaluate(heatmaps, gt_boxes):
        resized = F.interpolate(heatmaps[:, None], size=(30, 40), mode="bilinear", align_corners=False)[:, 0]
        boxes = heatmap_to_box(resized)
        return boxes, box_accuracy(boxes, gt_boxes[:, None])

    (boxes, hits), _ = compiled_matches_eager(evaluate, maps, gt)
    assert torch.equal(boxes, want_boxes)
    assert hits[::2].all()


@pytest.mark.cuda
def test_cuda_matches_reference(seed):
    maps = mixed_maps(60, 37, 45, torch.Generator().manual_seed(seed))
    assert torch.equal(heatmap_to_box(maps.cuda()).cpu(), reference(maps))
    torch.library.opcheck(torch.ops.dapo_fast.heatmap_to_box.default, (maps.cuda(), 0.5, 0.5, False))
