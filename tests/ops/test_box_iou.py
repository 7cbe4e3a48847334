"""box_iou (torchvision semantics, batched form) and box_accuracy; what torchvision's own
TestBoxIou checks (integer and float boxes, TorchScript, pairwise), with its tolerances."""
import pytest
import torch
import torchvision

import dapo_fast
from dapo_fast.ops import box_accuracy, box_iou
from dapo_fast.ops._reference import box_iou as ref
from tests._helpers import TOL, compiled_matches_eager

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def random_boxes(*shape, dtype=torch.float32):
    xy = torch.rand(*shape, 2, dtype=dtype) * 50
    wh = torch.rand(*shape, 2, dtype=dtype) * 30
    return torch.cat([xy, xy + wh], -1)


BACKENDS = ["auto", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,m", [(7, 11), (1, 1), (0, 5), (5, 0), (64, 3)])
def test_matches_torchvision(seed, backend, n, m):
    a, b = random_boxes(n), random_boxes(m)
    torch.testing.assert_close(box_iou(a, b, backend=backend), torchvision.ops.box_iou(a, b), **TOL[torch.float32])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_equals_loop(seed, backend):
    a, b = random_boxes(4, 9, dtype=torch.float64), random_boxes(4, 6, dtype=torch.float64)
    got = box_iou(a, b, backend=backend)
    for i in range(4):
        torch.testing.assert_close(got[i], torchvision.ops.box_iou(a[i], b[i]), **TOL[torch.float64])


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_boxes_like_torchvision(backend):
    a = torch.tensor([[0.0, 0, 0, 0], [0, 0, 2, 2], [3, 3, 1, 1]])
    b = torch.tensor([[0.0, 0, 0, 0], [1, 1, 3, 3]])
    want = torchvision.ops.box_iou(a, b)
    torch.testing.assert_close(box_iou(a, b, backend=backend), want, equal_nan=True)


# ---- what torchvision's own tests check (test_ops.py TestBoxIou), same tolerances, plus its dtypes ----

def int_boxes(n):
    xy = torch.randint(0, 300, (n, 2))
    return torch.cat([xy, xy + torch.randint(0, 120, (n, 2))], -1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_torchvision_suite_integer_boxes_give_float_iou(seed, backend):
    a, b = int_boxes(4), int_boxes(3)
    a[1] = torch.tensor([0, 0, 100, 100])
    b[1] = torch.tensor([0, 0, 50, 50])  # a quarter of it
    for dtype in (torch.int16, torch.int32, torch.int64):
        got, want = box_iou(a.to(dtype), b.to(dtype), backend=backend), torchvision.ops.box_iou(a.to(dtype), b.to(dtype))
        assert got.dtype == want.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=0.0, atol=1e-4)
        assert got[1, 1] == 0.25
    # uint8: torchvision subtracts corners in uint8 (wrapping around); ours is exact
    a8, b8 = a.clamp(max=255), b.clamp(max=255)
    got = box_iou(a8.to(torch.uint8), b8.to(torch.uint8), backend=backend)
    torch.testing.assert_close(got, ref.box_iou(a8.double(), b8.double()).float(), equal_nan=True)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype,atol", [(torch.float16, 0.002), (torch.bfloat16, 0.02), (torch.float32, 1e-3),
                                        (torch.float64, 1e-3)])
def test_torchvision_suite_float_boxes(seed, backend, dtype, atol):
    """Large, heavily overlapping boxes (torchvision's FLOAT_BOXES kind): result dtype and values."""
    a = random_boxes(3, dtype=torch.float64) * 10 + torch.tensor([280.0, 180, 900, 660], dtype=torch.float64)
    got, want = box_iou(a.to(dtype), a.to(dtype), backend=backend), torchvision.ops.box_iou(a.to(dtype), a.to(dtype))
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=0.0, atol=atol)
    torch.testing.assert_close(got, ref.box_iou(a, a).to(got.dtype), rtol=0.0, atol=atol)


def test_mixed_dtypes_promote_like_torchvision(seed):
    a, b = random_boxes(5), random_boxes(4)
    for da, db in ((torch.float32, torch.float64), (torch.int64, torch.float32), (torch.float16, torch.float32),
                   (torch.int32, torch.float64)):
        ai, bi = a.to(da), b.to(db)
        got, want = box_iou(ai, bi), torchvision.ops.box_iou(ai, bi)
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=0.0, atol=2e-3)


def test_torchvision_suite_jit_and_cartesian(seed):
    boxes = int_boxes(4).float()
    scripted = torch.jit.script(box_iou)
    torch.testing.assert_close(scripted(boxes, boxes), box_iou(boxes, boxes))
    assert scripted(int_boxes(3), int_boxes(2)).dtype == torch.float32
    a, b = random_boxes(5), random_boxes(7)
    pairwise = torch.stack([torch.cat([box_iou(a[i:i + 1], b[j:j + 1]) for j in range(7)], 1)[0] for i in range(5)])
    torch.testing.assert_close(pairwise, box_iou(a, b))


def test_box_accuracy(seed):
    pred = random_boxes(30)
    gts = [random_boxes(i % 4) for i in range(30)]
    gts[5] = pred[5:6] + 0.01  # near-identical: a hit
    got = box_accuracy(pred, gts)
    want = ref.box_accuracy(pred, gts)
    assert torch.equal(got, want) and bool(got[5])
    assert not got[0::4].any()  # no ground truth: miss
    # threshold is inclusive (IoU >= 0.5): a box covering half of its ground truth
    half = box_accuracy(torch.tensor([[0.0, 0, 10, 10]]), [torch.tensor([[0.0, 0, 10, 20]])])
    assert half.tolist() == [True]
    assert box_accuracy(torch.tensor([[0.0, 0, 10, 10]]), [torch.tensor([[0.0, 0, 10, 20]])], 0.51).tolist() == [False]


def test_bad_inputs():
    with pytest.raises(ValueError, match="a must"):
        box_iou(torch.zeros(3, 5), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="b must"):
        box_iou(torch.zeros(2, 3, 4), torch.zeros(3, 3, 4))
    with pytest.raises(TypeError, match="real numbers"):
        box_iou(torch.zeros(3, 4, dtype=torch.bool), torch.zeros(2, 4))
    with pytest.raises(TypeError, match="integer boxes"):
        box_iou(torch.zeros(3, 4, dtype=torch.int64), torch.zeros(2, 4, dtype=torch.int64), backend="cpu")
    with pytest.raises(ValueError, match="pred_boxes"):
        box_accuracy(torch.zeros(3, 5), [torch.zeros(1, 4)] * 3)
    with pytest.raises(ValueError, match="gt_boxes"):
        box_accuracy(torch.zeros(3, 4), [torch.zeros(1, 4)] * 2)


def test_cpu_kernel_opcheck_and_grad_fallback(seed):
    a, b = random_boxes(3, 9), random_boxes(3, 6)
    torch.library.opcheck(torch.ops.dapo_fast.box_iou.default, (a, b))
    torch.testing.assert_close(box_iou(a, b, backend="cpu"), ref.box_iou(a, b), **TOL[torch.float32])
    ag = a.clone().requires_grad_()
    out = box_iou(ag, b)  # auto + requires_grad: the differentiable reference
    out.sum().backward()
    assert ag.grad is not None and ag.grad.abs().sum() > 0
    with pytest.raises(RuntimeError, match="b must"):
        torch.ops.dapo_fast.box_iou(a, random_boxes(2, 6))


@pytest.mark.slow
def test_compile_fullgraph_differentiable_iou(seed):
    # with a gradient, auto runs the differentiable reference: it must trace whole too
    _, grads = compiled_matches_eager(box_iou, random_boxes(3, 7).requires_grad_(), random_boxes(3, 5).requires_grad_())
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
def test_compile_fullgraph_eval(seed):
    """Bbox accuracy the way an evaluation loop computes it, compiled: IoU of the predictions with
    their ground truth (the kernel) and box_accuracy with padded and with per-map boxes."""
    pred = random_boxes(12)
    padded = torch.cat([pred[:, None] + torch.randn(12, 1, 4), random_boxes(12, 2)], dim=1)  # [N, 3, 4]
    per_map = [random_boxes(i % 3) for i in range(11)] + [pred[11:] + 0.01]  # a hit at threshold 0.3

    def evaluate(pred, padded, per_map):
        return (box_iou(pred[:, None], padded), box_accuracy(pred, padded), box_accuracy(pred, per_map, 0.3))

    (iou, padded_hits, listed_hits), _ = compiled_matches_eager(evaluate, pred, padded, per_map)
    assert torch.equal(padded_hits, ref.box_accuracy(pred, list(padded)))
    assert torch.equal(listed_hits, ref.box_accuracy(pred, per_map, 0.3)) and listed_hits[11]
    torch.testing.assert_close(iou, ref.box_iou(pred[:, None], padded))


@pytest.mark.cuda
def test_cuda_matches_torchvision(seed):
    a, b = random_boxes(2, 30), random_boxes(2, 17)
    got = box_iou(a.cuda(), b.cuda())
    for i in range(2):
        torch.testing.assert_close(got[i].cpu(), torchvision.ops.box_iou(a[i], b[i]), **TOL[torch.float32])


@pytest.mark.parametrize("batched", [False, True])
def test_cpu_backend_gives_the_gradient(seed, batched):
    """backend="cpu" with inputs that require grad used to return a result whose backward left
    .grad None (the kernel had no autograd); its gradient is the reference's."""
    shape_a, shape_b = ((3, 5), (3, 4)) if batched else ((5,), (4,))
    a = random_boxes(*shape_a, dtype=torch.float64).requires_grad_()
    b = random_boxes(*shape_b, dtype=torch.float64).requires_grad_()
    b.data[..., 0, :] = a.data[..., 0, :]  # identical boxes: ties in the max/min of the corners
    weights = torch.randn(box_iou(a, b).shape, dtype=torch.float64)
    grads = {}
    for backend in ("cpu", "reference"):
        out = box_iou(a, b, backend=backend)
        assert out.requires_grad
        grads[backend] = torch.autograd.grad((out * weights).sum(), (a, b))
    torch.testing.assert_close(grads["cpu"], grads["reference"], **TOL[torch.float64])
    # gradcheck away from the ties (finite differences straddle the max/min kinks of identical corners)
    a = random_boxes(*shape_a, dtype=torch.float64).requires_grad_()
    b = random_boxes(*shape_b, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, y: box_iou(x, y, backend="cpu"), (a, b))


@pytest.mark.parametrize("threshold", [None, "0.5", torch.tensor(0.5), float("nan")])
def test_box_accuracy_threshold_must_be_a_number(threshold):
    with pytest.raises((TypeError, ValueError), match="threshold"):
        box_accuracy(torch.zeros(1, 4), [torch.zeros(1, 4)], threshold)
