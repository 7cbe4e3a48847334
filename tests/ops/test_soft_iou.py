"""soft_iou: C++ kernel vs the reference, both variants, gradients."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import soft_iou
from dapo_fast.ops._reference import soft_iou as ref
from tests._helpers import TOL, compiled_matches_eager, non_contiguous
from tests.ops._pcnet_inputs import make

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def fwd_bwd(fn, response, *args, **kwargs):
    r = response.detach().clone().requires_grad_()
    out = fn(r, *args, **kwargs)
    weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad((out * weights).sum(), r)
    return out.detach(), grad


@pytest.mark.parametrize("variant", ["iou", "half_dice"])
@pytest.mark.parametrize("mask_kind", ["bool", "uint8", "float"])
@pytest.mark.parametrize("shape", [(3, 2, 5, 7, 9), (2, 1, 3, 1, 1), (1, 3, 40, 8, 8), (2, 2, 0, 3, 3)])
def test_matches_reference(seed, poison, variant, mask_kind, shape):
    response, masks, _ = make(*shape, mask_kind=mask_kind)
    want = fwd_bwd(ref.soft_iou, response, masks, variant)
    got = fwd_bwd(soft_iou, response, masks, variant, backend="cpu")
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float32])
    torch.testing.assert_close(got[1], want[1], **TOL[torch.float32])


def test_hand_values_and_zero_response():
    r = torch.zeros(1, 1, 2, 2)
    r[0, 0, 0, 0] = 1.0
    r[0, 0, 0, 1] = 0.5
    m = torch.tensor([[[[1, 1], [0, 0]], [[0, 0], [1, 1]]]], dtype=torch.bool)
    # iou: inter 1.5 / (1.5 + 2 - 1.5); half_dice: 1.5 / 3.5; second mask: 0
    torch.testing.assert_close(soft_iou(r, m, eps=0.0), torch.tensor([[[1.5 / 2, 0.0]]]))
    torch.testing.assert_close(soft_iou(r, m, "half_dice", eps=0.0), torch.tensor([[[1.5 / 3.5, 0.0]]]))
    assert torch.equal(soft_iou(torch.zeros(1, 1, 2, 2), m), torch.zeros(1, 1, 2))


def test_float64_non_contiguous_gradcheck_opcheck(seed):
    response, masks, _ = make(2, 2, 3, 4, 5, dtype=torch.float64, mask_kind="float")
    want = fwd_bwd(ref.soft_iou, response, masks, "iou")
    got = fwd_bwd(soft_iou, non_contiguous(response), non_contiguous(masks), "iou")
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float64])
    torch.testing.assert_close(got[1], want[1], **TOL[torch.float64])
    response.requires_grad_()
    for variant in ("iou", "half_dice"):
        assert torch.autograd.gradcheck(lambda r: soft_iou(r, masks, variant), (response,))
        torch.library.opcheck(torch.ops.dapo_fast.soft_iou.default, (response, masks, variant, 1e-5))
    torch.library.opcheck(torch.ops.dapo_fast.soft_iou_backward.default,
                          (torch.randn(2, 2, 3, dtype=torch.float64), response.detach(), masks, "iou", 1e-5))


def test_compile_fullgraph_forward_and_backward(seed):
    response, masks, _ = make(2, 2, 4, 6, 7, mask_kind="float")

    def both_variants(r):
        return soft_iou(r, masks), soft_iou(r, masks, "half_dice")

    _, (grad,) = compiled_matches_eager(both_variants, response.requires_grad_())
    assert grad.abs().sum() > 0


def test_bad_inputs():
    with pytest.raises(ValueError, match="variant"):
        soft_iou(torch.rand(1, 1, 2, 2), torch.ones(1, 1, 2, 2), "dice")
    with pytest.raises(ValueError, match="masks"):
        soft_iou(torch.rand(1, 1, 2, 2), torch.ones(1, 1, 2, 3))
    with pytest.raises(RuntimeError, match="grad"):
        torch.ops.dapo_fast.soft_iou_backward(torch.ones(1, 1, 3), torch.rand(1, 1, 2, 2), torch.ones(1, 1, 2, 2),
                                              "iou", 1e-5)


@pytest.mark.cuda
@pytest.mark.parametrize("variant", ["iou", "half_dice"])
def test_cuda_matches_reference(seed, variant):
    response, masks, _ = make(mask_kind="uint8")
    want = fwd_bwd(ref.soft_iou, response, masks, variant)
    got = fwd_bwd(soft_iou, response.cuda(), masks.cuda(), variant)
    torch.testing.assert_close(got[0].cpu(), want[0], **TOL[torch.float32])
    torch.testing.assert_close(got[1].cpu(), want[1], **TOL[torch.float32])
    torch.library.opcheck(torch.ops.dapo_fast.soft_iou.default, (response.cuda().requires_grad_(), masks.cuda(),
                                                                variant, 1e-5))
