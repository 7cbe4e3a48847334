"""pointing_game / pointing_game_masks / resized_argmax against the reference (full resize + argmax)."""
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dapo_fast
from dapo_fast.ops import pointing_game, pointing_game_masks, resized_argmax
from dapo_fast.ops._reference import pointing_game as ref
from tests._helpers import compiled_matches_eager
from tests.ops._heatmaps import blobs, mixed_maps

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def random_sizes(n, low=3, high=70):
    return torch.randint(low, high, (n, 2))


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16])
@pytest.mark.parametrize("shape", [(13, 17), (1, 1), (1, 9), (40, 40)])
def test_resized_argmax_matches_reference(seed, dtype, shape, align_corners):
    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(24, *shape, g).to(dtype)
    sizes = random_sizes(24, low=1)  # up- and down-sampling, odd sizes, single rows / columns
    want = ref.resized_argmax(maps, sizes, align_corners)
    assert torch.equal(resized_argmax(maps, sizes, align_corners=align_corners), want)
    assert torch.equal(resized_argmax(maps.transpose(1, 2), sizes, align_corners=align_corners),
                       ref.resized_argmax(maps.transpose(1, 2), sizes, align_corners))


def pcnet_point_m(heatmaps, masks):
    """PCNet's public evaluation of PointM, restated: the response map upsampled to the mask with
    F.interpolate(bilinear, align_corners=True), its argmax, a hit where the mask is set there."""
    hits, peaks = [], []
    for heatmap, mask in zip(heatmaps, masks):
        up = F.interpolate(heatmap[None, None], size=tuple(mask.shape), mode="bilinear", align_corners=True)[0, 0]
        flat = int(up.argmax())
        peak = (flat // mask.shape[1], flat % mask.shape[1])
        peaks.append(peak)
        hits.append(bool(mask[peak]))
    return torch.tensor(hits), torch.tensor(peaks)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_align_corners_reproduces_pcnets_point_m(seed, backend):
    """align_corners=True is PCNet's PointM peak for peak (float64 maps without plateaus: the
    restatement's argmax sees the same values); the default resize points elsewhere."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.stack([blobs(10, 10, 1 + i % 3, g, torch.float64) for i in range(20)])
    maps = maps + 1e-3 * torch.rand(maps.shape, generator=g, dtype=torch.float64)
    masks = []
    for h, w in random_sizes(20, 40, 330).tolist():  # PCNet upsamples 10x10 maps to about 320
        m = blobs(h, w, 2, g, torch.float64)
        masks.append(m > 0.5 * m.max())
    want_hits, want_peaks = pcnet_point_m(maps, masks)
    hits, peaks = pointing_game_masks(maps, masks, return_peaks=True, align_corners=True, backend=backend)
    assert torch.equal(peaks, want_peaks) and torch.equal(hits, want_hits)
    assert not torch.equal(pointing_game_masks(maps, masks, return_peaks=True, backend=backend)[1], want_peaks)


def test_reference_resize_is_torch_and_opencv_bilinear(seed):
    import cv2

    g = torch.Generator().manual_seed(seed)
    maps = mixed_maps(12, 11, 14, g, dtype=torch.float64)
    for m, (h, w) in zip(maps, random_sizes(12, 1).tolist()):
        for align_corners in (False, True):
            torch.testing.assert_close(ref.bilinear_resize(m, h, w, align_corners),
                                       F.interpolate(m[None, None], size=(h, w), mode="bilinear",
                                                     align_corners=align_corners)[0, 0], rtol=0, atol=1e-12)
        mine = ref.bilinear_resize(m, h, w)
        theirs = cv2.resize(m.numpy(), (w, h), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(mine.numpy(), theirs, rtol=0, atol=1e-6)
        # the peak we report is a maximum of OpenCV's resize too (WWbL's isCorrectHit form)
        y, x = resized_argmax(m[None], torch.tensor([[h, w]]))[0].tolist()
        assert theirs[y, x] >= theirs.max() - 1e-6


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_tie_rule_first_in_row_major_order(backend):
    flat = torch.full((1, 5, 6), 2.0)
    assert resized_argmax(flat, [13, 9], backend=backend).tolist() == [[0, 0]]
    assert resized_argmax(flat, [13, 9], align_corners=True, backend=backend).tolist() == [[0, 0]]
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


# ---- the tie rule is exact: the first of the mathematically equal maxima in row-major order ----

def source_positions(out_size, in_size):
    """torch's / OpenCV's align_corners=False rule: (low tap, high tap, fraction) per output index,
    the fraction an exact Fraction of the float64 sample position."""
    rows = []
    for dst in range(out_size):
        src = max((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
        low = min(int(src), in_size - 1)
        if low == in_size - 1:
            rows.append((low, low, Fraction(0)))
        else:
            rows.append((low, low + 1, Fraction(src) - low))
    return rows


def exact_peak(heatmap, height, width):
    """Row-major index of the first maximum of the resize computed exactly (rational arithmetic)
    from the float64 sample positions: ties are the mathematical ones."""
    src = [[Fraction(v) for v in row] for row in heatmap.double().tolist()]
    ys, xs = source_positions(height, len(src)), source_positions(width, len(src[0]))
    best, best_index = None, 0
    for i, (y0, y1, fy) in enumerate(ys):
        for j, (x0, x1, fx) in enumerate(xs):
            top = (1 - fx) * src[y0][x0] + fx * src[y0][x1]
            bottom = (1 - fx) * src[y1][x0] + fx * src[y1][x1]
            value = (1 - fy) * top + fy * bottom
            if best is None or value > best:
                best, best_index = value, i * width + j
    return best_index


def plateau_maps(count, generator):
    """Smooth maps whose maximum is a plateau: saturated, clipped, quantised, or with the peak row
    repeated (the rows between the copies tie without being at a source maximum)."""
    maps = []
    for i in range(count):
        h, w = (int(v) for v in torch.randint(2, 12, (2,), generator=generator))
        m = blobs(h, w, 1 + i % 3, generator, torch.float64)
        m = m / m.max()
        kind = i % 4
        if kind == 0:
            m = (m * (1.1 + float(torch.rand((), generator=generator)))).clamp(max=1.0)
        elif kind == 1:
            m = torch.minimum(m, torch.tensor(0.6 + 0.3 * float(torch.rand((), generator=generator))))
        elif kind == 2:
            m = torch.round(m * 8) / 8
        else:
            row = int(m.max(dim=1).values.argmax())
            m = torch.cat([m[:row + 1], m[row:row + 1], m[row + 1:]])
        maps.append(m.float())
    return maps


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_plateau_peak_is_the_first_of_the_exact_maxima(seed, backend):
    g = torch.Generator().manual_seed(seed)
    for m in plateau_maps(24, g):
        height, width = (int(v) for v in torch.randint(3, 40, (2,), generator=g))
        (row, col), = resized_argmax(m[None], [height, width], backend=backend).tolist()
        assert row * width + col == exact_peak(m, height, width), (tuple(m.shape), height, width)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_infinite_peak_is_the_first_pixel_reading_it(seed, backend):
    """+inf is the maximum: its plateau is every output pixel that reads a +inf tap with a positive
    weight (a zero weight reads nothing, so no 0 * inf = NaN), the first one wins."""
    g = torch.Generator().manual_seed(seed)
    for i in range(20):
        h, w = (int(v) for v in torch.randint(2, 10, (2,), generator=g))
        m = torch.rand(h, w, generator=g)
        m.view(-1)[torch.randperm(h * w, generator=g)[:1 + i % 3]] = float("inf")
        # no smaller than the map: some output pixel reads each source pixel (a downsample can skip the +inf)
        height, width = int(torch.randint(h, 30, (), generator=g)), int(torch.randint(w, 30, (), generator=g))
        reads_inf = torch.zeros(height, width, dtype=torch.bool)
        for r, (y0, y1, fy) in enumerate(source_positions(height, h)):
            for c, (x0, x1, fx) in enumerate(source_positions(width, w)):
                taps = [m[y0, x0]] + [m[y0, x1]] * (fx > 0) + [m[y1, x0]] * (fy > 0) + [m[y1, x1]] * (fx > 0 and fy > 0)
                reads_inf[r, c] = any(t == float("inf") for t in taps)
        assert reads_inf.any()
        want = int(reads_inf.reshape(-1).to(torch.int8).argmax())
        (row, col), = resized_argmax(m[None], [height, width], backend=backend).tolist()
        assert row * width + col == want
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask.view(-1)[want] = True
        hits, peaks = pointing_game_masks(m[None], mask[None], return_peaks=True, backend=backend)
        assert hits.tolist() == [True] and peaks.tolist() == [[row, col]]


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


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_pointing_game_masks_resize_rules(backend):
    # one row (0 0 1 0) upsampled to 8 columns. align_corners=False samples the source at
    # (d + 0.5) / 2 - 0.5: columns 4 and 5 read 1.75 and 2.25, both 0.75, and the first wins;
    # align_corners=True samples d * 3 / 7: column 5 reads 15/7 (0.857), column 4 12/7 (0.714)
    m = torch.tensor([[[0.0, 0.0, 1.0, 0.0]]])
    assert resized_argmax(m, [1, 8], backend=backend).tolist() == [[0, 4]]
    assert resized_argmax(m, [1, 8], align_corners=True, backend=backend).tolist() == [[0, 5]]
    mask = torch.zeros(1, 8, dtype=torch.bool)
    mask[0, 5] = True
    assert pointing_game_masks(m, [mask], align_corners=True, backend=backend).tolist() == [True]
    assert pointing_game_masks(m, [mask], backend=backend).tolist() == [False]
    assert pointing_game_masks(m, mask[None], align_corners=True, backend=backend).tolist() == [True]
    # downsampling (0 1 0 0.8) to 2 columns: False averages neighbours (0.5, 0.4), True keeps the ends (0, 0.8)
    m = torch.tensor([[[0.0, 1.0, 0.0, 0.8]]])
    assert resized_argmax(m, [1, 2], backend=backend).tolist() == [[0, 0]]
    assert resized_argmax(m, [1, 2], align_corners=True, backend=backend).tolist() == [[0, 1]]
    g = torch.Generator().manual_seed(0)
    maps = mixed_maps(18, 10, 10, g)
    masks = [torch.rand(int(h), int(w), generator=g) > 0.5 for h, w in random_sizes(18, 5, 40)]
    assert torch.equal(pointing_game_masks(maps, masks, align_corners=True, backend=backend),
                       ref.pointing_game_masks(maps, masks, align_corners=True))
    with pytest.raises(TypeError, match="align_corners"):
        resized_argmax(m, [4, 4], align_corners="yes", backend=backend)


def test_empty_batch():
    assert pointing_game(torch.rand(0, 4, 4), [], torch.empty(0, 2, dtype=torch.int64)).shape == (0,)
    assert pointing_game_masks(torch.rand(0, 4, 4), []).shape == (0,)
    assert resized_argmax(torch.rand(0, 4, 4), torch.empty(0, 2, dtype=torch.int64)).shape == (0, 2)


def test_opcheck(seed):
    maps = torch.rand(5, 7, 9)
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps, torch.randint(1, 30, (5, 2))))
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps, torch.randint(1, 30, (5, 2)), True))
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
    with pytest.raises(ValueError, match=r"sizes\[0\]\[0\] must be in \[1, "):
        resized_argmax(torch.rand(1, 4, 4), [0, 4])
    with pytest.raises(ValueError, match="sizes must be positive, at most"):
        resized_argmax(torch.rand(1, 4, 4), torch.tensor([[4, -1]]))
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
    assert torch.equal(resized_argmax(maps.cuda(), sizes.cuda(), align_corners=True).cpu(),
                       ref.resized_argmax(maps, sizes, True))
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps.cuda(), sizes.cuda()))
    torch.library.opcheck(torch.ops.dapo_fast.resized_argmax.default, (maps.cuda(), sizes.cuda(), True))
