"""weighted_smooth_l1 vs torch's smooth_l1_loss times the weight."""
import pytest
import torch
import torch.nn.functional as F

import dapo_fast
from dapo_fast.ops import weighted_smooth_l1
from tests._helpers import TOL, compiled_matches_eager

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("beta", [1.0, 0.11, 0.0])
def test_matches_torch(seed, poison, backend, reduction, beta):
    x = (torch.randn(4, 7, 4, dtype=torch.float64) * 2).requires_grad_()
    y = torch.randn(4, 7, 4, dtype=torch.float64).requires_grad_()
    w = torch.rand(4, 7, dtype=torch.float64)  # one weight per box
    got = weighted_smooth_l1(x, y, w, beta, reduction, backend=backend)
    elem = w[..., None] * F.smooth_l1_loss(x, y, reduction="none", beta=beta)
    want = {"none": elem, "sum": elem.sum(), "mean": elem.mean()}[reduction]
    torch.testing.assert_close(got, want, **TOL[torch.float64])
    up = torch.randn_like(got)
    torch.testing.assert_close(torch.autograd.grad((got * up).sum(), (x, y)),
                               torch.autograd.grad((want * up).sum(), (x, y)), **TOL[torch.float64])


def test_float32_deterministic_sum_and_empty(seed):
    x, y, w = torch.randn(50000, 4), torch.randn(50000, 4), torch.rand(50000, 4)
    threads = torch.get_num_threads()
    try:
        a = weighted_smooth_l1(x, y, w)
        torch.set_num_threads(1)
        b = weighted_smooth_l1(x, y, w)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, (w * F.smooth_l1_loss(x, y, reduction="none")).sum(), rtol=1e-5, atol=1e-3)
    assert weighted_smooth_l1(torch.empty(0, 4), torch.empty(0, 4), torch.empty(0)).item() == 0


def test_gradcheck_opcheck(seed):
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    w = torch.rand(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a, b: weighted_smooth_l1(a, b, w, 0.5), (x, y))
    for reduction in (0, 1, 2):
        torch.library.opcheck(torch.ops.dapo_fast.weighted_smooth_l1.default, (x, y, w, 0.5, reduction))


def test_compile_fullgraph_forward_and_backward(seed):
    w = torch.rand(5, 6)  # one weight per box

    def every_reduction(x, y):
        return (weighted_smooth_l1(x, y, w, 0.5, "none"), weighted_smooth_l1(x, y, w, 0.5, "sum"),
                weighted_smooth_l1(x, y, w, 0.5, "mean"))

    _, grads = compiled_matches_eager(every_reduction, torch.randn(5, 6, 4).requires_grad_(),
                                      torch.randn(5, 6, 4).requires_grad_())
    torch.testing.assert_close(grads[1], -grads[0])
    assert grads[0].abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="weight"):
        weighted_smooth_l1(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(4))
    with pytest.raises(ValueError, match="target"):
        weighted_smooth_l1(torch.zeros(3, 4), torch.zeros(3, 5), torch.zeros(3))
    with pytest.raises(ValueError, match="reduction"):
        weighted_smooth_l1(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match="beta"):
        weighted_smooth_l1(torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3), beta=-1.0)


@pytest.mark.cuda
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_cuda_matches_reference(seed, reduction):
    x = torch.randn(300, 4, requires_grad=True)
    y, w = torch.randn(300, 4), torch.rand(300)
    want = weighted_smooth_l1(x, y, w, 0.5, reduction, backend="reference")
    xc = x.detach().cuda().requires_grad_()
    got = weighted_smooth_l1(xc, y.cuda(), w.cuda(), 0.5, reduction)
    torch.testing.assert_close(got.cpu(), want, **TOL[torch.float32])
    torch.testing.assert_close(torch.autograd.grad(got.sum(), xc)[0].cpu(), torch.autograd.grad(want.sum(), x)[0],
                               **TOL[torch.float32])
