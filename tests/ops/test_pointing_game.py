"""pointing_game / pointing_game_masks / resized_argmax against the reference (full resize + argmax)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dapo_fast
from dapo_fast.ops import pointing_game, pointing_game_masks, resized_argmax
from dapo_fast.ops._reference import pointing_game as ref
from tests._helpers import compiled_matches_eager
from tests.ops._heatmaps import mixed_maps

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def random_sizes(n, low=3, high=70):
    return torch.randint(low, high, (n, 2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape", [(13, 17), (1, 1), (1, 9), (40, 40)])
def test_resized_argmax_matches_reference(seed, dtype, shape):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(24, *shape, g).to(dtype)
    sizes = random_sizes(24)  # up- and down-sampling, odd sizes
    want = ref.resized_argmax(maps, sizes)
    assert torch.equal(resized_argmax(maps, sizes), want)
    assert torch.equal(resized_argmax(maps.transpose(1, 2), sizes), ref.resized_argmax(maps.transpose(1, 2), sizes))


def test_reference_resize_is_torch_and_opencv_bilinear(seed):
    import cv2

    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(12, 11, 14, g, dtype=torch.float64)
    for m, (h, w) in zip(maps, random_sizes(12).tolist()):
        mine = ref.bilinear_resize(m, h, w)
        torch.testing.assert_close(mine, F.interpolate(m[None, None], size=(h, w), mode="bilinear",
                                                       align_corners=False)[0, 0], rtol=0, atol=1e-12)
        theirs = cv2.resize(m.numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(mine.numpy(), theirs, rtol=0, atol=1e-6)
        # the peak we report is a maximum of OpenCV's resize too (WWbL's isCorrectHit form)
        y, x = resized_argmax(m[None], torch.tensor([[h, w]]))[0].tolist()
        assert theirs[y, x] >= theirs.max() - 1e-6


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_tie_rule_first_in_row_major_order(backend):
    flat = torch.full((1, 5, 6), 2.0)
    assert resized_argmax(flat, [13, 9], backend=backend).tolist() == [[0, 0]]
    twin = torch.zeros(1, 4, 4)
    twin[0, 1, 3] = twin[0, 2, 0] = 1.0  # equal peaks: the upper one comes first
    assert resized_argmax(twin, [4, 4], backend=backend).tolist() == [[1, 3]]
    # upsampled x2, each peak is a 2x2 plateau at 1.0 and 0.75 ramps: the plateau's first pixel wins
    up = resized_argmax(twin, [8, 8], backend=backend).tolist()
    assert up == [[2, 6]] or up == [[2, 7]]
    assert up == ref.resized_argmax(twin, torch.tensor([[8, 8]])).tolist()


def test_all_zero_and_nan_maps():
    maps = torch.zeros(2, 6, 6)
    maps[1, 4, 4] = 1.0
    maps[1, 2, 3] = float("nan")  # NaN counts as the maximum (torch.argmax's rule): the first NaN pixel
    sizes = torch.tensor([[12, 12]] * 2)
    out = resized_argmax(maps, sizes)
    assert out[0].tolist() == [0, 0]
    assert torch.equal(out, ref.resized_argmax(maps, sizes))
    assert out[1].tolist() == [3, 5]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_pointing_game_matches_reference(seed, backend):
    g = torch.Generator().manual_seed(seed)
    n = 40
    maps = mixed_maps(n, 19, 23, g)
    sizes = random_sizes(n, 10, 90)
    boxes = []
    for i in range(n):
        k = i % 4  # 0..3 boxes per map (0: always a miss)
        h, w = sizes[i].tolist()
        xy = torch.rand(k, 2) * torch.tensor([w, h])
        wh = torch.rand(k, 2) * torch.tensor([w, h]) / 2
        boxes.append(torch.cat([xy, xy + wh], 1).round())
    true_peaks = ref.resized_argmax(maps, sizes)
    for i in range(2, n, 4):  # every 4th map also gets a box around its true peak: some hits for sure
        y, x = true_peaks[i].tolist()
        boxes[i] = torch.cat([boxes[i], torch.tensor([[x - 2.0, y - 3.0, x + 1.0, y + 2.0]])])
    got, peaks = pointing_game(maps, boxes, sizes, return_peaks=True, backend=backend)
    assert torch.equal(got, ref.pointing_game(maps, boxes, sizes))
    assert got.any() and not got.all()
    assert not got[::4].any()
    # bounds are inclusive: a box whose corner is exactly the peak is a hit, one pixel off is a miss
    exact = [torch.tensor([[p[1], p[0], p[1] + 5, p[0] + 5]], dtype=torch.float32) for p in peaks.tolist()]
    off = [torch.tensor([[p[1] + 1, p[0], p[1] + 5, p[0] + 5]], dtype=torch.float32) for p in peaks.tolist()]
    below = [torch.tensor([[p[1] - 5, p[0] - 5, p[1], p[0]]], dtype=torch.float64) for p in peaks.tolist()]
    assert pointing_game(maps, exact, sizes, backend=backend).all()
    assert pointing_game(maps, below, sizes, backend=backend).all()
    assert not pointing_game(maps, off, sizes, backend=backend).any()
    # padded-tensor form of the boxes and a single (height, width) for all maps
    padded = torch.stack([torch.cat([b, torch.full((3 - len(b), 4), -1.0)]) for b in boxes[1::4]])
    torch.testing.assert_close(pointing_game(maps[1::4], padded, [50, 60], backend=backend),
                               ref.pointing_game(maps[1::4], list(padded), torch.tensor([[50, 60]] * len(padded))))


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_pointing_game_masks(seed, backend):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(18, 10, 10, g)
    masks = [torch.rand(int(h), int(w)) > 0.5 for h, w in random_sizes(18, 5, 40)]
    want = ref.pointing_game_masks(maps, masks)
    assert torch.equal(pointing_game_masks(maps, masks, backend=backend), want)
    stacked = torch.rand(18, 32, 32) > 0.5
    assert torch.equal(pointing_game_masks(maps, stacked.to(torch.uint8), backend=backend),
                       ref.pointing_game_masks(maps, list(stacked)))
    # the peak of a one-blob map is inside a mask that is the thresholded map itself
    blob = torch.zeros(1, 8, 8)
    blob[0, 5, 2] = 1.0
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[10:12, 4:6] = True
    assert pointing_game_masks(blob, [mask], backend=backend).tolist() == [True]
    assert pointing_game_masks(blob, [~mask], backend=backend).tolist() == [False]


def test_empty_batch():
    assert pointing_game(torch.rand(0, 4, 4), [], torch.empty(0, 2)).shape == (0,)
    assert pointing_game_masks(torch.rand(0, 4, 4), []).shape == (0,)
    assert resized_argmax(torch.rand(0, 4, 4), torch.empty(0, 2, dtype=torch.int64)).shape == (0, 2)


def test_opcheck(seed):
    maps = torch.rand(5, 7, 9)
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps, torch.randint(1, 30, (5, 2))))
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps[:0], torch.empty(0, 2, dtype=torch.long)))


def test_bad_inputs():
    with pytest.raises(ValueError, match="heatmaps"):
        pointing_game(torch.rand(4, 4), [torch.zeros(1, 4)], torch.tensor([[4, 4]]))
    with pytest.raises(ValueError, match="image_sizes"):
        pointing_game(torch.rand(2, 4, 4), [torch.zeros(1, 4)] * 2, torch.tensor([[4, 4, 4]]))
    with pytest.raises(ValueError, match="gt_boxes"):
        pointing_game(torch.rand(2, 4, 4), [torch.zeros(1, 4)], torch.tensor([[4, 4]] * 2))
    with pytest.raises(ValueError, match=r"gt_boxes\[1\]"):
        pointing_game(torch.rand(2, 4, 4), [torch.zeros(1, 4), torch.zeros(1, 5)], torch.tensor([[4, 4]] * 2))
    with pytest.raises(ValueError, match="gt_masks"):
        pointing_game_masks(torch.rand(2, 4, 4), torch.zeros(3, 4, 4))
    with pytest.raises(RuntimeError, match="sizes must be positive"):
        resized_argmax(torch.rand(1, 4, 4), [0, 4])
    with pytest.raises(RuntimeError, match="sizes"):
        torch.ops.dapo_fast.resized_argmax(torch.rand(2, 4, 4), torch.ones(3, 2, dtype=torch.long))


@pytest.mark.slow
def test_compile_fullgraph_eval(seed):
    """The pointing game as an evaluation step, compiled: per-map box lists (an evaluation loop's
    form), padded boxes, masks of the image size, and the peaks themselves."""
    g = torch.Generator().manual_seed(seed)
    n = 8
    maps = mixed_maps(n, 9, 11, g)
    sizes = torch.tensor([[30, 40]] * n)
    peaks = ref.resized_argmax(maps, sizes)
    around = torch.cat([peaks[:, 1:] - 2, peaks[:, :1] - 2, peaks[:, 1:] + 2, peaks[:, :1] + 2], 1).float()
    per_map = [around[i:i + 1] if i % 2 else torch.empty(0, 4) for i in range(n)]
    padded = torch.stack([around, around + 10], dim=1)
    masks = torch.rand(n, 30, 40, generator=g) > 0.5

    def evaluate(heatmaps, per_map, padded, masks):
        return (pointing_game(heatmaps, per_map, sizes), pointing_game(heatmaps, padded, [30, 40]),
                pointing_game_masks(heatmaps, masks), resized_argmax(heatmaps, sizes))

    (listed, padded_hits, mask_hits, got_peaks), _ = compiled_matches_eager(evaluate, maps, per_map, padded, masks)
    assert torch.equal(listed, torch.arange(n) % 2 == 1) and padded_hits.all()
    assert torch.equal(mask_hits, ref.pointing_game_masks(maps, list(masks)))
    assert torch.equal(got_peaks, peaks)


@pytest.mark.cuda
def test_cuda_matches_reference(seed):
    maps = mixed_maps(30, 13, 17, torch.Generator().manual_seed(seed))
    sizes = random_sizes(30)
    assert torch.equal(resized_argmax(maps.cuda(), sizes.cuda()).cpu(), ref.resized_argmax(maps, sizes))
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps.cuda(), sizes.cuda()))
