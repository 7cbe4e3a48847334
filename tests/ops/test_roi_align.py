"""roi_align: every backend against torchvision.ops.roi_align and the reference, and what
torchvision's own test suite checks of its roi_align / RoIAlign (TorchScript, torch.fx, autocast,
box-shape errors), with its tolerances."""
import math
from typing import List

import pytest
import torch
import torchvision

import dapo_fast
from dapo_fast.ops import RoIAlign, roi_align, use_backend
from dapo_fast.ops._reference.roi_align import roi_align as reference
from tests._helpers import TOL, non_contiguous

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def random_rois(num_rois, batch, height, width, scale, dtype=torch.float32, kinds=("inside", "partly", "outside", "tiny", "huge")):
    """Boxes in image coordinates (feature map * 1/scale): inside, partly and fully outside the map,
    tiny (below a pixel) and huge (several times the map)."""
    img_h, img_w = height / scale, width / scale
    rows = []
    for i in range(num_rois):
        kind = kinds[i % len(kinds)]
        if kind == "inside":
            x1, y1 = torch.rand(2) * torch.tensor([img_w * 0.7, img_h * 0.7])
            w, h = torch.rand(2) * torch.tensor([img_w * 0.3, img_h * 0.3]) + 1
        elif kind == "partly":
            x1, y1 = torch.rand(2) * torch.tensor([img_w, img_h]) - torch.tensor([img_w * 0.3, img_h * 0.3])
            w, h = torch.rand(2) * torch.tensor([img_w * 0.6, img_h * 0.6]) + 1
        elif kind == "outside":
            x1, y1 = torch.tensor([img_w * 1.5, -img_h * 2]) + torch.rand(2) * 3
            w, h = torch.rand(2) * 5 + 1
        elif kind == "tiny":
            x1, y1 = torch.rand(2) * torch.tensor([img_w, img_h])
            w, h = torch.rand(2) * 0.3
        else:  # huge: several times the map
            x1, y1 = -torch.rand(2) * torch.tensor([img_w, img_h])
            w, h = torch.tensor([img_w, img_h]) * (2 + torch.rand(2))
        b = torch.randint(0, batch, ()).float()
        rows.append(torch.stack([b, x1, y1, x1 + w, y1 + h]))
    return torch.stack(rows).to(dtype) if rows else torch.empty(0, 5, dtype=dtype)


def make(seed_dtype=torch.float32, batch=3, channels=5, height=11, width=13, num_rois=11, scale=0.5):
    x = torch.randn(batch, channels, height, width, dtype=seed_dtype)
    return x, random_rois(num_rois, batch, height, width, scale, seed_dtype)


def fwd_bwd(fn, x, *args, **kwargs):
    x = x.detach().clone().requires_grad_()
    out = fn(x, *args, **kwargs)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad(out, x, grad_out)
    return out.detach(), grad


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 1, 2, 4])
@pytest.mark.parametrize("output_size", [(1, 1), (7, 7), (3, 5)])
def test_matches_torchvision(seed, poison, backend, aligned, sampling_ratio, output_size):
    x, rois = make()
    want, want_grad = fwd_bwd(torchvision.ops.roi_align, x, rois, output_size, 0.5, sampling_ratio, aligned)
    got, got_grad = fwd_bwd(roi_align, x, rois, output_size, 0.5, sampling_ratio, aligned, backend=backend)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float32])


@pytest.mark.parametrize("layout", ["channels_last", "non_contiguous", "sliced_channels"])
def test_layouts(seed, poison, layout):
    x, rois = make(channels=19, num_rois=30)
    if layout == "channels_last":
        xi = x.contiguous(memory_format=torch.channels_last)
    elif layout == "non_contiguous":
        xi = non_contiguous(x)
    else:
        xi = torch.randn(3, 38, 11, 13)[:, ::2]
        x = xi.contiguous()
    want, want_grad = fwd_bwd(torchvision.ops.roi_align, x, rois, 7, 0.5, 2, True)
    got, got_grad = fwd_bwd(roi_align, xi, rois, 7, 0.5, 2, True)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float32])


@pytest.mark.parametrize("backend", ["cpu", "reference", pytest.param("cuda", marks=pytest.mark.cuda)])
def test_channels_last_layout_default_and_kept(seed, poison, backend):
    """Default: torchvision's layout (contiguous NCHW output and input gradient, so `.view` works);
    keep_channels_last=True: both stay channels_last (served in place). Same numbers either way."""
    x, rois = make(channels=19, num_rois=30)
    want = torchvision.ops.roi_align(x, rois, 7, 0.5, 2, True)
    want_grad = torchvision_grad_of_sum(x, rois)
    device = "cuda" if backend == "cuda" else "cpu"
    x, rois, want, want_grad = x.to(device), rois.to(device), want.to(device), want_grad.to(device)
    xc = x.contiguous(memory_format=torch.channels_last)
    for upstream in ("dense", "expanded"):  # an expanded gradient (from .sum()) has no layout of its own
        for keep in (False, True):
            xi = xc.detach().clone().requires_grad_()
            out = roi_align(xi, rois, 7, 0.5, 2, True, backend=backend, keep_channels_last=keep)
            grad_out = torch.ones_like(out) if upstream == "dense" else torch.ones(()).expand(out.shape)
            (grad,) = torch.autograd.grad(out, xi, grad_out)
            torch.testing.assert_close(out, want, **TOL[torch.float32])
            torch.testing.assert_close(grad, want_grad, **TOL[torch.float32])
            layout = torch.channels_last if keep else torch.contiguous_format
            assert out.is_contiguous(memory_format=layout)
            if backend != "reference":  # the reference's gradient layout is autograd's choice
                assert grad.is_contiguous(memory_format=layout)
            if not keep:
                out.view(out.shape[0], -1)
                grad.view(-1)


def torchvision_grad_of_sum(x, rois):
    x = x.detach().clone().requires_grad_()
    torchvision.ops.roi_align(x, rois, 7, 0.5, 2, True).sum().backward()
    return x.grad


def test_dense_and_sparse_images(seed, poison):
    """Image 0 gets many RoIs (NHWC tile path), image 1 one RoI (gather path), image 2 none."""
    x = torch.randn(3, 70, 9, 12)
    dense = random_rois(40, 1, 9, 12, 1.0, kinds=("inside", "partly"))
    sparse = random_rois(1, 1, 9, 12, 1.0, kinds=("inside",))
    sparse[:, 0] = 1
    rois = torch.cat([dense[:20], sparse, dense[20:]])
    want, want_grad = fwd_bwd(torchvision.ops.roi_align, x, rois, (3, 5), 1.0, -1, False)
    got, got_grad = fwd_bwd(roi_align, x, rois, (3, 5), 1.0, -1, False)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float32])
    assert (got_grad[2] == 0).all()


@pytest.mark.parametrize("poisoned", [False, True])
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "channels_last_kept"])
def test_outputs_large_enough_for_huge_pages(request, seed, poisoned, layout):
    """Output and input gradient above 16 MB, where the CPU kernel asks for huge pages and writes
    the input gradient without a zero-fill first: dense images (NHWC tiles, a channel count that is
    no multiple of the tile or vector width), a sparse image, an image without RoIs. Fresh large
    buffers read as zeros, so the poisoned run is what shows an element left unwritten."""
    if poisoned:
        request.getfixturevalue("poison")
    batch, channels, height, width, size = 4, 300, 60, 60, 7
    x = torch.randn(batch, channels, height, width)
    if layout != "nchw":
        x = x.contiguous(memory_format=torch.channels_last)
    rois = random_rois(300, 1, height, width, 0.25, kinds=("inside", "partly", "huge"))
    rois[:150, 0], rois[150:299, 0], rois[299, 0] = 0, 3, 1  # image 1: one RoI, image 2: none
    assert rois.shape[0] * channels * size * size * 4 > 16 * 2**20 and x.numel() * 4 > 16 * 2**20
    want, want_grad = fwd_bwd(torchvision.ops.roi_align, x, rois, size, 0.25, 2, True)
    got, got_grad = fwd_bwd(roi_align, x, rois, size, 0.25, 2, True, backend="cpu",
                            keep_channels_last=layout == "channels_last_kept")
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float32])
    assert (got_grad[2] == 0).all()


def test_forward_bitwise_independent_of_thread_count(seed):
    x, _ = make(channels=70, num_rois=0)
    rois = random_rois(60, 3, 11, 13, 0.5, kinds=("inside", "partly"))
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (threads, 1):
            torch.set_num_threads(n)
            for xi in (x, x.contiguous(memory_format=torch.channels_last)):
                results.append(roi_align(xi, rois, 7, 0.5, 2, True, backend="cpu"))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[2]) and torch.equal(results[1], results[3])


def test_list_of_boxes_and_batch_index(seed):
    x, _ = make(batch=3)
    boxes = [random_rois(n, 1, 11, 13, 0.5)[:, 1:] for n in (2, 0, 4)]
    got = roi_align(x, boxes, (3, 5), 0.5, 2, True)
    want = torchvision.ops.roi_align(x, boxes, (3, 5), 0.5, 2, True)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    # the last 4 rows are image 2's: pooling image 2 alone gives the same rows
    alone = roi_align(x[2:], [boxes[2]], (3, 5), 0.5, 2, True)
    torch.testing.assert_close(got[2:], alone)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_empty(backend):
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    out = roi_align(x, torch.empty(0, 5), 7, 1.0, 2, True, backend=backend)
    assert out.shape == (0, 4, 7, 7)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    empty_map = torch.randn(2, 4, 0, 8)
    out = roi_align(empty_map, torch.tensor([[0.0, 0, 0, 4, 4]]), 2, backend=backend)
    assert out.shape == (1, 4, 2, 2) and (out == 0).all()


def test_float64_matches_reference_tightly(seed, poison):
    x, rois = make(torch.float64)
    want, want_grad = fwd_bwd(reference, x, rois, 0.5, 3, 5, -1, True)
    got, got_grad = fwd_bwd(roi_align, x, rois, (3, 5), 0.5, -1, True)
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_accumulates_in_float(seed, dtype):
    x, rois = make(channels=8, num_rois=20)
    x, rois = x.to(dtype), rois.to(dtype)
    # same rounded inputs, computed in float32: only the output rounding may differ
    want, want_grad = fwd_bwd(roi_align, x.float(), rois.float(), 7, 0.5, 2, True)
    got, got_grad = fwd_bwd(roi_align, x, rois, 7, 0.5, 2, True)
    assert got.dtype == dtype and got_grad.dtype == dtype
    torch.testing.assert_close(got.float(), want, **TOL[dtype])
    torch.testing.assert_close(got_grad.float(), want_grad, **TOL[dtype])


def test_nan_box_contributes_zero(poison):
    x = torch.randn(1, 3, 6, 6)
    rois = torch.tensor([[0.0, float("nan"), 1, 4, 4], [0.0, 1, 1, 4, 4]])
    for backend in ("cpu", "reference"):
        out = roi_align(x, rois, 2, 1.0, 2, False, backend=backend)
        assert torch.equal(out[0], torch.zeros_like(out[0])), backend
        assert torch.isfinite(out[1]).all()


def test_gradcheck_float64(seed):
    x, rois = make(torch.float64, batch=2, channels=2, height=5, width=6, num_rois=4, scale=1.0)
    x.requires_grad_()
    for aligned in (False, True):
        fn = lambda t: roi_align(t, rois, (2, 3), 1.0, -1, aligned)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))
    ref = lambda t: reference(t, rois, 1.0, 2, 3, 2, True)  # noqa: E731
    assert torch.autograd.gradcheck(ref, (x,))


def test_opcheck(seed):
    x, rois = make(channels=4, num_rois=6)
    samples = [
        (x, rois, 0.5, 3, 5, 2, True),
        (x.contiguous(memory_format=torch.channels_last), rois, 0.5, 7, 7, -1, False),
        (x.contiguous(memory_format=torch.channels_last), rois, 0.5, 3, 5, 2, True, True),
        (x.double(), rois.double(), 1.0, 2, 2, 1, True),
        (x, rois[:0], 0.5, 3, 3, 2, True),
    ]
    for args in samples:
        args = (args[0].clone().requires_grad_(),) + args[1:]
        torch.library.opcheck(torch.ops.dapo_fast.roi_align.default, args)
    grad = torch.randn(6, 4, 3, 5)
    torch.library.opcheck(torch.ops.dapo_fast.roi_align_backward.default,
                          (grad, rois, 0.5, 3, 5, 3, 4, 11, 13, 2, True))


def test_backward_bitwise_deterministic(seed):
    x, _ = make(channels=40, num_rois=0)
    rois = random_rois(60, 3, 11, 13, 0.5, kinds=("inside", "partly"))
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (threads, threads, 1):  # three runs, the last on one thread
            torch.set_num_threads(n)
            for xi in (x, x.contiguous(memory_format=torch.channels_last)):
                results.append(fwd_bwd(roi_align, xi, rois, 7, 0.5, 2, True)[1])
    finally:
        torch.set_num_threads(threads)
    for i in range(2, len(results)):
        assert torch.equal(results[i], results[i % 2]), "backward differs between runs"


@pytest.mark.slow
def test_compile_fullgraph_pool_refine_pool(seed):
    """ReIR's pattern: pool, regress box offsets from the pooled features, pool the refined boxes."""
    x, rois = make(channels=6, num_rois=8)
    head = torch.nn.Linear(6 * 7 * 7, 4)

    def step(feats, rois):
        pooled = roi_align(feats, rois, 7, 0.5, 2, True)
        deltas = torch.tanh(head(pooled.flatten(1)))
        refined = torch.cat([rois[:, :1], rois[:, 1:] + deltas], dim=1)
        return roi_align(feats, refined, 7, 0.5, 2, True).sum(dim=(2, 3))

    compiled = torch.compile(step, fullgraph=True)
    xe = x.clone().requires_grad_()
    xc = x.clone().requires_grad_()
    want = step(xe, rois)
    got = compiled(xc, rois)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    want.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(xc.grad, xe.grad, **TOL[torch.float32])


@pytest.mark.triton
@pytest.mark.parametrize("channels_last", [False, True])
def test_triton_matches_reference(seed, channels_last):
    x, rois = make(batch=2, channels=3, height=7, width=9, num_rois=5)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for aligned, sampling_ratio in ((True, 2), (False, -1)):
        want, want_grad = fwd_bwd(reference, x, rois, 0.5, 2, 3, sampling_ratio, aligned)
        got, got_grad = fwd_bwd(roi_align, x, rois, (2, 3), 0.5, sampling_ratio, aligned, backend="triton")
        torch.testing.assert_close(got, want, **TOL[torch.float32])
        torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float32])


@pytest.mark.triton
def test_triton_layouts_default_and_kept(seed):
    x, rois = make(batch=2, channels=3, height=7, width=9, num_rois=5)
    xc = x.contiguous(memory_format=torch.channels_last)
    want, want_grad = fwd_bwd(reference, x, rois, 0.5, 2, 3, 2, True)
    for keep in (False, True):
        got, got_grad = fwd_bwd(roi_align, xc, rois, (2, 3), 0.5, 2, True, backend="triton", keep_channels_last=keep)
        torch.testing.assert_close(got, want, **TOL[torch.float32])
        torch.testing.assert_close(got_grad, want_grad, **TOL[torch.float32])
        layout = torch.channels_last if keep else torch.contiguous_format
        assert got.is_contiguous(memory_format=layout) and got_grad.is_contiguous(memory_format=layout)


@pytest.mark.triton
def test_triton_double_backward_matches_reference(seed):
    """The gradient of roi_align's backward with respect to its upstream gradient (what
    gradgradcheck differentiates) is roi_align itself, on the Triton pair as on the others."""
    x, rois = make(batch=2, channels=3, height=7, width=9, num_rois=4)

    def grad_of_grad(backend):
        xi = x.clone().requires_grad_()
        upstream = torch.zeros(4, 3, 2, 3, requires_grad=True)
        out = roi_align(xi, rois, (2, 3), 0.5, 2, True, backend=backend)
        (grad_x,) = torch.autograd.grad(out, xi, upstream, create_graph=True)
        (grad_upstream,) = torch.autograd.grad(grad_x, upstream, torch.ones_like(grad_x))
        return grad_upstream

    torch.testing.assert_close(grad_of_grad("triton"), grad_of_grad("reference"), **TOL[torch.float32])


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton.roi_align import roi_align_triton

    x, rois = make(batch=2, channels=3, height=7, width=9, num_rois=3)
    torch.library.opcheck(roi_align_triton, (x.requires_grad_(), rois, 0.5, 2, 2, 2, True),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    x, rois = make(channels=16, num_rois=20)
    want, want_grad = fwd_bwd(torchvision.ops.roi_align, x, rois, 7, 0.5, 2, True)
    got, got_grad = fwd_bwd(roi_align, x.cuda(), rois.cuda(), 7, 0.5, 2, True, backend=backend)
    torch.testing.assert_close(got.cpu(), want, **TOL[torch.float32])
    torch.testing.assert_close(got_grad.cpu(), want_grad, **TOL[torch.float32])
    op = torch.ops.dapo_fast.roi_align.default if backend == "cuda" else torch.ops.dapo_fast.roi_align_triton.default
    torch.library.opcheck(op, (x.cuda().requires_grad_(), rois.cuda(), 0.5, 7, 7, 2, True))


def test_module_and_backend_context(seed):
    x, rois = make()
    module = RoIAlign((3, 5), 0.5, 2, aligned=True)
    assert "aligned=True" in repr(module)
    with use_backend("reference"):
        ref_out = module(x, rois)
    torch.testing.assert_close(module(x, rois), ref_out, **TOL[torch.float32])


# ---- what torchvision's own tests check (test_ops.py RoIOpTester / TestRoIAlign), same tolerances ----

TV_ROIS = [[0, 0, 0, 9, 9], [0, 0, 5, 4, 9], [0, 5, 5, 9, 9], [1, 0, 0, 9, 9]]


def sample_by_hand(plane, y, x):
    """One bilinear sample of a [H, W] float64 plane, torchvision's border rule: 0 outside
    [-1, H] x [-1, W], coordinates below 0 read pixel 0, the last row/column reads itself."""
    height, width = plane.shape
    if y < -1 or y > height or x < -1 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0, y = height - 1, float(height - 1)
    if x0 >= width - 1:
        x0, x = width - 1, float(width - 1)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    fy, fx = y - y0, x - x0
    return ((1 - fy) * (1 - fx) * plane[y0, x0] + (1 - fy) * fx * plane[y0, x1]
            + fy * (1 - fx) * plane[y1, x0] + fy * fx * plane[y1, x1])


def roi_align_by_hand(x, rois, pooled_h, pooled_w, spatial_scale, sampling_ratio, aligned):
    """RoIAlign from its definition, one sample at a time, in float64."""
    x = x.detach().double()
    out = torch.zeros(len(rois), x.shape[1], pooled_h, pooled_w, dtype=torch.float64)
    offset = 0.5 if aligned else 0.0
    for r, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        left, top = x1 * spatial_scale - offset, y1 * spatial_scale - offset
        roi_w, roi_h = x2 * spatial_scale - offset - left, y2 * spatial_scale - offset - top
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / pooled_h, roi_w / pooled_w
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_h)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(bin_w)
        for c in range(x.shape[1]):
            plane = x[int(b), c].numpy()
            for i in range(pooled_h):
                for j in range(pooled_w):
                    total = sum(sample_by_hand(plane, top + i * bin_h + (iy + 0.5) * bin_h / grid_h,
                                               left + j * bin_w + (ix + 0.5) * bin_w / grid_w)
                                for iy in range(grid_h) for ix in range(grid_w))
                    out[r, c, i, j] = total / max(grid_h * grid_w, 1)
    return out


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("x_dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("contiguous", [True, False])
def test_torchvision_suite_forward(seed, backend, aligned, x_dtype, contiguous):
    x = torch.rand(2, 50, 10, 10, dtype=x_dtype)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = torch.tensor(TV_ROIS, dtype=x_dtype)
    got = RoIAlign((5, 5), spatial_scale=1, sampling_ratio=-1, aligned=aligned, backend=backend)(x, rois)
    assert got.dtype == x_dtype
    tol = 4e-3 if x_dtype == torch.float16 else 1e-5
    want = roi_align_by_hand(x, rois, 5, 5, 1.0, -1, aligned)
    torch.testing.assert_close(got, want.to(x_dtype), rtol=tol, atol=tol)


@pytest.mark.parametrize("contiguous", [True, False])
def test_torchvision_suite_backward_gradcheck_eager_and_scripted(seed, contiguous):
    x = torch.rand(1, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    if not contiguous:
        x = x.permute(0, 1, 3, 2)
    rois = torch.tensor([[0, 0, 0, 4, 4], [0, 0, 2, 3, 4], [0, 2, 2, 4, 4]], dtype=torch.float64)
    module = RoIAlign((2, 2), spatial_scale=1, sampling_ratio=1)
    scripted = torch.jit.script(roi_align)
    assert torch.autograd.gradcheck(lambda z: module(z, rois), (x,), atol=1e-5)
    assert torch.autograd.gradcheck(lambda z: scripted(z, rois, 2), (x,), atol=1e-5)


class _Wrapper(torch.nn.Module):
    """torchvision's RoIOpTesterModuleWrapper: calls the op, returns nothing."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, a, b):
        self.layer(a, b)


def test_fx_leaf_node_and_symbolic_trace(seed):
    from torchvision.models.feature_extraction import get_graph_node_names

    names = get_graph_node_names(_Wrapper(RoIAlign((5, 5), 1, -1)))
    assert names[0] == names[1] and len(names[0]) == 3  # a, b and one roi_align node
    module = RoIAlign((5, 5), 1, -1)
    traced = torch.fx.symbolic_trace(module)
    assert [n.target for n in traced.graph.nodes if n.op == "call_function"] == [roi_align]
    x = torch.rand(2, 50, 5, 5)
    rois = torch.tensor(TV_ROIS, dtype=torch.float32)
    want = module(x, rois)
    got = traced(x, rois)
    assert got.dtype == x.dtype
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fx_feature_extraction_of_a_model_holding_roialign(seed):
    from torchvision.models.feature_extraction import create_feature_extractor

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.pool = RoIAlign(3, 0.5, 2, aligned=True)
            self.fc = torch.nn.Linear(4 * 9, 2)

        def forward(self, images, rois):
            return self.fc(self.pool(self.conv(images), rois).flatten(1))

    model = Head()
    extractor = create_feature_extractor(model, return_nodes={"pool.roi_align": "pooled", "fc": "out"})
    images = torch.rand(2, 3, 12, 12)
    rois = random_rois(5, 2, 12, 12, 0.5)
    features = extractor(images, rois)
    torch.testing.assert_close(features["pooled"], roi_align(model.conv(images), rois, 3, 0.5, 2, True))
    torch.testing.assert_close(features["out"], model(images, rois))


class _PoolWrapper(torch.nn.Module):
    """torchvision's PoolWrapper: boxes annotated as a list of tensors, for TorchScript."""

    def __init__(self, pool):
        super().__init__()
        self.pool = pool

    def forward(self, images: torch.Tensor, boxes: List[torch.Tensor]) -> torch.Tensor:
        return self.pool(images, boxes)


def test_jit_script_module_with_a_list_of_boxes(seed):
    model = _PoolWrapper(RoIAlign(output_size=[3, 3], spatial_scale=1.0, sampling_ratio=-1))
    scripted = torch.jit.script(model)
    x = torch.rand(2, 1, 10, 10)
    roi = torch.tensor(TV_ROIS, dtype=torch.float32).t()  # [5, 4]: five boxes per image
    got = scripted(x, [roi, roi])
    assert got.shape == (10, 1, 3, 3)
    torch.testing.assert_close(got, model(x, [roi, roi]))
    torch.testing.assert_close(got, torchvision.ops.roi_align(x, [roi, roi], [3, 3], 1.0, -1))


def test_jit_script_checks_and_layout(seed):
    scripted = torch.jit.script(roi_align)
    xc = torch.rand(2, 3, 10, 10).contiguous(memory_format=torch.channels_last)
    rois = torch.tensor(TV_ROIS, dtype=torch.float32)
    assert scripted(xc, rois, 2).is_contiguous()
    assert scripted(xc, rois, 2, 1.0, -1, False, "auto", True).is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(torch.jit.Error, match="boxes"):
        scripted(xc, torch.zeros(1, 4), 2)
    with pytest.raises(torch.jit.Error, match="backend"):
        scripted(xc, rois, 2, 1.0, -1, False, "reference")


def test_bad_box_shapes_raise_torchvisions_assertion_error():
    a = torch.linspace(1, 8 * 8, 8 * 8).reshape(1, 1, 8, 8)
    for boxes in (torch.tensor([[0, 0, 3, 3]], dtype=a.dtype), [torch.tensor([[0, 0, 3]], dtype=a.dtype)]):
        with pytest.raises(AssertionError, match="boxes"):
            roi_align(a, boxes, output_size=(2, 2))
        with pytest.raises(ValueError, match="boxes"):  # and still the ValueError our callers catch
            roi_align(a, boxes, output_size=(2, 2))


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("autocast_dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_mixed_dtypes_like_torchvision(seed, backend, autocast_dtype):
    """Under CPU autocast torchvision casts input and boxes (not float64) to float32 and the
    result back to the input's dtype; mixed dtypes work, float64 with another dtype does not."""
    x = torch.rand(2, 6, 10, 10)
    rois = torch.tensor(TV_ROIS, dtype=torch.float32)
    for x_dtype in DTYPES:
        for rois_dtype in DTYPES:
            xi, ri = x.to(x_dtype), rois.to(rois_dtype)
            with torch.autocast("cpu", dtype=autocast_dtype):
                try:
                    want = torchvision.ops.roi_align(xi, ri, 5, 1.0, -1, True)
                except RuntimeError:
                    with pytest.raises(TypeError, match="input and boxes"):
                        roi_align(xi, ri, 5, 1.0, -1, True, backend=backend)
                    continue
                got = roi_align(xi, ri, 5, 1.0, -1, True, backend=backend)
            assert got.dtype == want.dtype == x_dtype
            torch.testing.assert_close(got, want, **TOL[x_dtype])


@pytest.mark.cuda
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("rois_dtype", [torch.float32, torch.float16])
def test_cuda_autocast_like_torchvision_suite(seed, aligned, x_dtype, rois_dtype):
    x = torch.rand(2, 50, 10, 10, dtype=x_dtype, device="cuda").permute(0, 1, 3, 2)
    rois = torch.tensor(TV_ROIS, dtype=rois_dtype, device="cuda")
    with torch.autocast("cuda"):
        got = RoIAlign((5, 5), 1, -1, aligned=aligned)(x, rois)
    assert got.dtype == x_dtype
    tol = 4e-3 if x_dtype == torch.float16 else 1e-5
    want = roi_align_by_hand(x.cpu(), rois.cpu(), 5, 5, 1.0, -1, aligned)
    torch.testing.assert_close(got.cpu(), want.to(x_dtype), rtol=tol, atol=tol)


class TestBadInputs:
    def test_rois_shape(self):
        with pytest.raises(ValueError, match="boxes"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(3, 4), 2)
        with pytest.raises(ValueError, match=r"boxes\[0\]"):
            roi_align(torch.randn(1, 2, 4, 4), [torch.zeros(3, 5)], 2)
        with pytest.raises(RuntimeError, match="rois"):
            torch.ops.dapo_fast.roi_align(torch.randn(1, 2, 4, 4), torch.zeros(3, 4), 1.0, 2, 2, 2, True)

    def test_dtype_mismatch(self):
        with pytest.raises(TypeError, match="input and boxes"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5, dtype=torch.float64), 2)
        with pytest.raises(RuntimeError, match="input and rois"):
            torch.ops.dapo_fast.roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5, dtype=torch.float64),
                                          1.0, 2, 2, 2, True)
        with pytest.raises(TypeError, match="input"):
            roi_align(torch.ones(1, 2, 4, 4, dtype=torch.int64), torch.zeros(1, 5, dtype=torch.int64), 2)

    def test_device_mismatch(self):
        with pytest.raises(ValueError, match="boxes"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5, device="meta"), 2)

    @pytest.mark.parametrize("size", [0, -1, (2, -3), (0, 2)])
    def test_bad_output_size(self, size):
        with pytest.raises(ValueError, match="output_size"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), size)
        with pytest.raises(RuntimeError, match="output_size"):
            torch.ops.dapo_fast.roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), 1.0, 0, -1, 2, True)

    def test_input_rank(self):
        with pytest.raises(ValueError, match="input"):
            roi_align(torch.randn(2, 4, 4), torch.zeros(1, 5), 2)
        with pytest.raises(RuntimeError, match="input"):
            torch.ops.dapo_fast.roi_align(torch.randn(2, 4, 4), torch.zeros(1, 5), 1.0, 2, 2, 2, True)

    @pytest.mark.parametrize("index", [2.0, -1.0, float("nan")])
    def test_batch_index_out_of_range(self, index):
        rois = torch.tensor([[index, 0, 0, 2, 2]])
        with pytest.raises(RuntimeError, match="batch index"):
            roi_align(torch.randn(2, 2, 4, 4), rois, 2)

    def test_bad_backend(self):
        with pytest.raises(ValueError, match="backend"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), 2, backend="fast")
        with pytest.raises(ValueError, match="backend='cuda'"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), 2, backend="cuda")


def test_build_info():
    info = dapo_fast.build_info()
    assert info["version"] == dapo_fast.__version__
    assert isinstance(info["cuda"], bool) and isinstance(info["num_threads"], int) and info["num_threads"] >= 1
    assert info["openmp"] is True
    assert info["cpu_vector_isa"] in ("x86-64-v4 (avx512)", "x86-64-v3 (avx2+fma)", "x86-64 (sse2)", "neon", "scalar")


class TestScalarArguments:
    """Scalars the kernels would misread are refused, naming the argument."""

    @pytest.mark.parametrize("ratio", [2**32 + 3, -2**31 - 1, 46341])
    def test_sampling_ratio_beyond_the_kernel_int(self, ratio):
        # 2**32 + 3 used to pool as sampling_ratio=3, -2**31 - 1 as 2**31 - 1 samples per axis (a hang)
        with pytest.raises(ValueError, match="sampling_ratio"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), 2, 1.0, ratio)

    @pytest.mark.parametrize("name, value", [("output_size", 2.5), ("output_size", (2, None)), ("output_size", True),
                                             ("spatial_scale", None), ("spatial_scale", torch.tensor(0.5)),
                                             ("sampling_ratio", 2.0), ("aligned", "no"), ("aligned", 1)])
    def test_wrong_types(self, name, value):
        args = dict(output_size=2, spatial_scale=1.0, sampling_ratio=2, aligned=True)
        args[name] = value
        with pytest.raises(TypeError, match=name):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), **args)

    @pytest.mark.parametrize("scale", [float("nan"), float("inf")])
    def test_non_finite_spatial_scale(self, scale):
        with pytest.raises(ValueError, match="spatial_scale"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(1, 5), 2, scale)

    def test_absurd_output_size_refused_before_allocation(self):
        with pytest.raises(ValueError, match="output_size give an output of shape .* GiB"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(3, 5), 10**9)
        with pytest.raises(ValueError, match=r"output_size\[0\]"):
            roi_align(torch.randn(1, 2, 4, 4), torch.zeros(3, 5), (2**31, 1))
        assert roi_align(torch.randn(1, 2, 4, 4), torch.zeros(0, 5), 10**9).shape == (0, 2, 10**9, 10**9)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_pixel_reaches_only_the_bins_that_read_it(value):
    """A sample reads its four taps (a zero bilinear weight included, as in torchvision); a sample
    outside the map reads nothing (as in torchvision's CUDA kernel; its CPU kernel reads pixel
    (0, 0) with weight 0 there). The reference used to do the latter, so a NaN or Inf at pixel
    (0, 0) leaked into every bin with a sample outside the map."""
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    x[0, 0, 0, 0] = value
    outside, inside, straddling = [0, 9.0, 9.0, 14.0, 12.0], [0, 2.0, 1.0, 4.5, 3.5], [0, -8.0, -8.0, 3.0, 3.0]
    rois = torch.tensor([outside, inside, straddling], dtype=torch.float64)
    for aligned in (False, True):
        for ratio in (-1, 2):
            got = roi_align(x, rois, (3, 2), 1.0, ratio, aligned, backend="cpu")
            want = roi_align(x, rois, (3, 2), 1.0, ratio, aligned, backend="reference")
            torch.testing.assert_close(got, want, equal_nan=True, **TOL[torch.float64])
            assert torch.equal(got[0], torch.zeros_like(got[0]))
            torch.testing.assert_close(got[1], torchvision.ops.roi_align(x, rois[1:2], (3, 2), 1.0, ratio, aligned)[0],
                                       **TOL[torch.float64])
            assert torch.isfinite(got[2, :, :2]).all()  # the bins whose samples are all outside the map


@pytest.mark.parametrize("backend", ["cpu", "reference", pytest.param("triton", marks=pytest.mark.triton)])
def test_infinite_box_with_adaptive_sampling_pools_zero(backend):
    # the reference used to raise OverflowError (an infinite grid), the kernel looped over 2**30
    # samples per bin and axis (seconds per box), Triton cast an infinite ceil to int32
    x = torch.randn(1, 2, 6, 7)
    for box in ([0, 1, 1, float("inf"), 3], [0, -float("inf"), 1, 3, 3], [0, 1, -float("inf"), 3, 5]):
        out = roi_align(x, torch.tensor([box]), 3, 0.5, 0, False, backend=backend)
        assert torch.equal(out, torch.zeros_like(out))


def test_adaptive_grid_is_capped_like_sampling_ratio():
    """A bin wider than 46340 feature pixels samples 46340 times along that axis (the kernel
    used to count ceil(bin) samples, up to 2**30, in a 32-bit int)."""
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64)
    rois = torch.tensor([[0, -1e6, 2.0, 1e6, 2.5]], dtype=torch.float64)  # 2e6 px wide, under a pixel high
    got = roi_align(x, rois, 1, 1.0, 0, False, backend="cpu")
    want = roi_align(x, rois, 1, 1.0, 0, False, backend="reference")
    torch.testing.assert_close(got, want, **TOL[torch.float64])


@pytest.mark.parametrize("backend", ["cpu", "reference", pytest.param("triton", marks=pytest.mark.triton)])
@pytest.mark.parametrize("value", [float("inf"), -float("inf")])
def test_inf_pixel_read_with_zero_weight_gives_nan_as_torchvision(backend, value):
    """Each sample multiplies its four taps: on the last row (both row taps are that row, the
    second with weight 0) or on a sample that falls on a pixel, an Inf pixel makes the bin NaN,
    as in torchvision. The CPU kernel summed a pixel's weights over the samples first (0 + w),
    which gave +-Inf instead."""
    x = torch.randn(1, 2, 1, 5, dtype=torch.float64)
    x[0, 0, 0, 2] = value
    rois = torch.tensor([[0, 0.0, 0.0, 4.0, 1.0], [0, 2.2, 0.0, 3.9, 1.0], [0, 3.0, 0.0, 4.0, 1.0]],
                        dtype=torch.float64)
    for aligned in (False, True):
        got = roi_align(x, rois, (1, 2), 1.0, 2, aligned, backend=backend)
        want = torchvision.ops.roi_align(x, rois, (1, 2), 1.0, 2, aligned)
        torch.testing.assert_close(got, want, equal_nan=True, **TOL[torch.float64])
        assert torch.isnan(got[0, 0]).any() and torch.isfinite(got[:, 1]).all()


@pytest.mark.parametrize("backend", ["cpu", "reference", pytest.param("triton", marks=pytest.mark.triton)])
def test_nan_box_size_is_not_forced_to_one_pixel(backend):
    """aligned=False makes a RoI at least 1x1 (torchvision's max(size, 1)), but a NaN size stays
    NaN and the RoI samples nothing; the kernels' max() made it one pixel and pooled a value."""
    x = torch.randn(1, 2, 4, 5)
    rois = torch.tensor([[0, 1.0, 1.0, float("nan"), 2.0], [0, 1.0, 1.0, 2.0, float("nan")]])
    for ratio in (2, 0):
        out = roi_align(x, rois, 2, 1.0, ratio, False, backend=backend)
        assert torch.equal(out, torch.zeros_like(out))
