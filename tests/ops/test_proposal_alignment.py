"""proposal_alignment: C++ kernel vs the reference (values, argmax gradient, tie rule)."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import proposal_alignment
from dapo_fast.ops._reference import proposal_alignment as ref
from tests._helpers import TOL, compiled_matches_eager, non_contiguous
from tests.ops._pcnet_inputs import make

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def fwd_bwd(fn, response, *args, **kwargs):
    r = response.detach().clone().requires_grad_()
    out = fn(r, *args, **kwargs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad((out * weights).sum(), r)
    return out.detach(), grad


@pytest.mark.parametrize("mask_kind", ["bool", "uint8", "float"])
@pytest.mark.parametrize("shape", [(3, 2, 5, 7, 9), (2, 1, 3, 1, 1), (1, 3, 40, 8, 8), (2, 2, 0, 3, 3)])
def test_matches_reference(seed, poison, mask_kind, shape):
    # responses quantised to 1/16: ties between pixels are common, so the tie rule is exercised
    response, masks, valid = make(*shape, mask_kind=mask_kind)
    want = fwd_bwd(ref.proposal_alignment, response, masks, valid)
    got = fwd_bwd(proposal_alignment, response, masks, valid, backend="cpu")
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)
    torch.testing.assert_close(got[1], want[1], **TOL[torch.float32])


def test_dtypes_and_layouts(seed):
    response, masks, valid = make(dtype=torch.float64, mask_kind="float")
    want = fwd_bwd(ref.proposal_alignment, response, masks, valid)
    got = fwd_bwd(proposal_alignment, non_contiguous(response), non_contiguous(masks), valid)
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float64])
    torch.testing.assert_close(got[1], want[1], **TOL[torch.float64])
    half, hmasks, hvalid = make(dtype=torch.float16)
    torch.testing.assert_close(proposal_alignment(half, hmasks, hvalid).float(),
                               ref.proposal_alignment(half.float(), hmasks, hvalid), **TOL[torch.float16])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_tie_rule_first_pixel_gets_gradient(backend):
    response = torch.zeros(1, 1, 3, 3)
    response[0, 0, 0, 2] = response[0, 0, 2, 0] = 0.5
    response.requires_grad_()
    masks = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    proposal_alignment(response, masks, backend=backend).sum().backward()
    want = torch.zeros(1, 1, 3, 3)
    want[0, 0, 0, 2] = 1.0  # row-major first of the two maxima
    assert torch.equal(response.grad, want)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_invalid_masks_and_zero_response(backend):
    response, masks, _ = make()
    valid = torch.zeros(3, 5, dtype=torch.bool)
    r = response.clone().requires_grad_()
    out = proposal_alignment(r, masks, valid, backend=backend)
    assert torch.equal(out.detach(), torch.zeros(3, 2, 5))
    out.sum().backward()
    assert torch.equal(r.grad, torch.zeros_like(r))
    assert torch.equal(proposal_alignment(torch.zeros(3, 2, 7, 9), masks, backend=backend), torch.zeros(3, 2, 5))


def test_gradcheck_and_opcheck(seed):
    response, masks, valid = make(2, 2, 3, 4, 5, dtype=torch.float64, mask_kind="float")
    response = (response + 0.01 * torch.rand_like(response)).requires_grad_()  # distinct products
    assert torch.autograd.gradcheck(lambda r: proposal_alignment(r, masks, valid), (response,))
    torch.library.opcheck(torch.ops.dapo_fast.proposal_alignment.default, (response, masks, valid))
    r32, m32, v32 = make()
    torch.library.opcheck(torch.ops.dapo_fast.proposal_alignment.default, (r32.requires_grad_(), m32, v32))
    scores, argmax = torch.ops.dapo_fast.proposal_alignment(r32, m32, v32)
    torch.library.opcheck(torch.ops.dapo_fast.proposal_alignment_backward.default,
                          (torch.randn_like(scores), argmax, m32, 7, 9))


def test_compile_fullgraph_forward_and_backward(seed):
    response, masks, valid = make(2, 2, 4, 6, 7)
    _, (grad,) = compiled_matches_eager(lambda r: proposal_alignment(r, masks, valid), response.requires_grad_())
    assert grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="masks"):
        proposal_alignment(torch.rand(2, 3, 5, 5), torch.zeros(3, 4, 5, 5))
    with pytest.raises(ValueError, match="mask_valid"):
        proposal_alignment(torch.rand(2, 3, 5, 5), torch.zeros(2, 4, 5, 5), torch.ones(4, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="masks"):
        torch.ops.dapo_fast.proposal_alignment(torch.rand(2, 3, 5, 5), torch.zeros(2, 4, 5, 5, dtype=torch.int32),
                                               torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.cuda
@pytest.mark.parametrize("mask_kind", ["bool", "float"])
def test_cuda_matches_reference(seed, mask_kind):
    response, masks, valid = make(mask_kind=mask_kind)
    want = fwd_bwd(ref.proposal_alignment, response, masks, valid)
    got = fwd_bwd(proposal_alignment, response.cuda(), masks.cuda(), valid.cuda())
    torch.testing.assert_close(got[0].cpu(), want[0], **TOL[torch.float32])
    torch.testing.assert_close(got[1].cpu(), want[1], **TOL[torch.float32])
    torch.library.opcheck(torch.ops.dapo_fast.proposal_alignment.default,
                          (response.cuda().requires_grad_(), masks.cuda(), valid.cuda()))
