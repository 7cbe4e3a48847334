"""box_encode / box_decode: detectron2 Box2BoxTransform semantics (checked against hand-computed
deltas and torchvision's BoxCoder, which implements the same transform), round trip, gradients."""
import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder

import dapo_fast
from dapo_fast.ops import box_decode, box_encode
from dapo_fast.ops._reference import box_coder as ref
from tests._helpers import TOL, compiled_matches_eager, non_contiguous

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")
BACKENDS = ["cpu", "reference"]


def random_boxes(*shape, dtype=torch.float32):
    xy = torch.rand(*shape, 2, dtype=dtype) * 100
    wh = torch.rand(*shape, 2, dtype=dtype) * 60 + 2
    return torch.cat([xy, xy + wh], -1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hand_computed_deltas(backend):
    proposal = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    target = torch.tensor([[2.0, 4.0, 14.0, 28.0]])
    # centres (5, 10) -> (8, 16), sizes (10, 20) -> (12, 24)
    want = torch.tensor([[10 * 3 / 10, 10 * 6 / 20, 5 * math.log(1.2), 5 * math.log(1.2)]])
    torch.testing.assert_close(box_encode(proposal, target, backend=backend), want)
    torch.testing.assert_close(box_encode(proposal, target, (1.0, 2.0, 3.0, 4.0), backend=backend),
                               torch.tensor([[0.3, 0.6, 3 * math.log(1.2), 4 * math.log(1.2)]]))
    torch.testing.assert_close(box_decode(want, proposal, backend=backend), target)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_torchvision_boxcoder_and_round_trip(seed, backend, dtype):
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    proposals, targets = random_boxes(37, dtype=dtype), random_boxes(37, dtype=dtype)
    deltas = box_encode(proposals, targets, backend=backend)
    torch.testing.assert_close(deltas, coder.encode_single(targets, proposals), **TOL[dtype])
    decoded = box_decode(deltas, proposals, backend=backend)
    torch.testing.assert_close(decoded, coder.decode_single(deltas, proposals), **TOL[dtype])
    torch.testing.assert_close(decoded, targets, rtol=1e-4 if dtype == torch.float32 else 1e-10,
                               atol=1e-3 if dtype == torch.float32 else 1e-10)


def test_cpu_matches_reference_with_leading_dims_and_clamp(seed, poison):
    proposals, targets = random_boxes(3, 5), random_boxes(3, 5)
    deltas = torch.randn(3, 5, 4) * 4
    deltas[0, 0, 2] = 50.0  # beyond the clamp: the width saturates at exp(log(1000/16)) * w
    for fn, args in ((box_encode, (proposals, targets)), (box_decode, (deltas, proposals))):
        xs = [a.clone().requires_grad_() for a in args]
        ys = [a.clone().requires_grad_() for a in args]
        got = fn(*xs, backend="cpu")
        want = fn(*ys, backend="reference")
        torch.testing.assert_close(got, want, **TOL[torch.float32])
        w = torch.randn_like(got)
        gg = torch.autograd.grad((got * w).sum(), xs)
        gw = torch.autograd.grad((want * w).sum(), ys)
        for a, b in zip(gg, gw):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    clamped = box_decode(deltas[:1, :1], proposals[:1, :1])
    width = proposals[0, 0, 2] - proposals[0, 0, 0]
    torch.testing.assert_close(clamped[0, 0, 2] - clamped[0, 0, 0], width * 1000 / 16)
    torch.testing.assert_close(box_encode(non_contiguous(proposals), non_contiguous(targets)),
                               ref.box_encode(proposals, targets), **TOL[torch.float32])
    assert box_encode(torch.empty(0, 4), torch.empty(0, 4)).shape == (0, 4)


def test_gradcheck_and_opcheck(seed):
    proposals, targets = random_boxes(6, dtype=torch.float64), random_boxes(6, dtype=torch.float64)
    deltas = torch.randn(6, 4, dtype=torch.float64)
    p, t, d = (x.clone().requires_grad_() for x in (proposals, targets, deltas))
    assert torch.autograd.gradcheck(lambda a, b: box_encode(a, b), (p, t))
    assert torch.autograd.gradcheck(lambda a, b: box_decode(a, b), (d, p))
    w = [10.0, 10.0, 5.0, 5.0]
    torch.library.opcheck(torch.ops.dapo_fast.box_encode.default, (p, t, w))
    torch.library.opcheck(torch.ops.dapo_fast.box_decode.default, (d, p, w, math.log(1000 / 16)))
    torch.library.opcheck(torch.ops.dapo_fast.box_decode_backward.default,
                          (torch.randn_like(deltas), deltas, proposals, w, 4.0))
    torch.library.opcheck(torch.ops.dapo_fast.box_encode_backward.default,
                          (torch.randn_like(deltas), proposals, targets, w))


def test_bad_inputs():
    with pytest.raises(ValueError, match="targets"):
        box_encode(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="proposals"):
        box_encode(torch.zeros(3, 5), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="weights"):
        box_decode(torch.zeros(3, 4), torch.zeros(3, 4), (1.0, 1.0, 1.0))
    with pytest.raises(TypeError, match="deltas and boxes"):
        box_decode(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="weights"):
        torch.ops.dapo_fast.box_encode(torch.zeros(3, 4), torch.zeros(3, 4), [1.0, 2.0])


@pytest.mark.cuda
def test_cuda_matches_reference(seed):
    proposals, targets, deltas = random_boxes(20), random_boxes(20), torch.randn(20, 4)
    for fn, args in ((box_encode, (proposals, targets)), (box_decode, (deltas, proposals))):
        xs = [a.cuda().requires_grad_() for a in args]
        ys = [a.clone().requires_grad_() for a in args]
        got, want = fn(*xs), fn(*ys, backend="reference")
        torch.testing.assert_close(got.cpu(), want, **TOL[torch.float32])
        gg = torch.autograd.grad(got.sum(), xs)
        gw = torch.autograd.grad(want.sum(), ys)
        for a, b in zip(gg, gw):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-4)


def test_compile_fullgraph_forward_and_backward(seed):
    proposals, targets, deltas = random_boxes(9), random_boxes(9), torch.randn(9, 4)

    def encode_decode(proposals, targets, deltas):
        return box_encode(proposals, targets), box_decode(deltas, proposals, scale_clamp=2.0)

    _, grads = compiled_matches_eager(encode_decode, proposals.requires_grad_(), targets.requires_grad_(),
                                      deltas.requires_grad_())
    assert all(g.abs().sum() > 0 for g in grads)


def test_compile_fullgraph_regression_step():
    """ReIR's refinement step: decode predicted deltas, score them against pseudo ground truth
    with box_iou, encode regression targets and take the weighted smooth-L1, all in one graph."""
    from dapo_fast.ops import box_iou, weighted_smooth_l1

    torch.manual_seed(0)
    xy = torch.rand(12, 2) * 50
    proposals = torch.cat([xy, xy + torch.rand(12, 2) * 40 + 4], dim=1)
    pseudo_gt = proposals + torch.randn(12, 4)
    deltas = (torch.randn(12, 4) * 0.1).requires_grad_()

    def step(deltas):
        refined = box_decode(deltas, proposals)
        overlap = box_iou(refined.detach(), pseudo_gt).diagonal()
        targets = box_encode(proposals, pseudo_gt)
        return weighted_smooth_l1(deltas, targets, (overlap > 0.1).to(deltas.dtype)[:, None].expand(-1, 4))

    want = step(deltas)
    (want_grad,) = torch.autograd.grad(want, deltas)
    got = torch.compile(step, fullgraph=True)(deltas)
    (got_grad,) = torch.autograd.grad(got, deltas)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
