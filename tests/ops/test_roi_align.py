"""roi_align: every backend against torchvision.ops.roi_align and the reference."""
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
    if layout == "channels_last":  # served in place: NHWC out, NHWC grad
        assert got.is_contiguous(memory_format=torch.channels_last)
        assert got_grad.is_contiguous(memory_format=torch.channels_last)


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
