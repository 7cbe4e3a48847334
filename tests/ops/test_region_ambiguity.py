"""region_ambiguity and the PCNet losses: C++ kernel vs the reference, gradients, compile."""
import pytest
import torch

import dapo_fast
from dapo_fast.losses.pcnet import iad_loss, pcnet_losses, ras_loss, straight_through_onehot
from dapo_fast.ops import region_ambiguity
from dapo_fast.ops._reference import region_ambiguity as ref
from tests._helpers import TOL, non_contiguous
from tests.ops._pcnet_inputs import make

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def fwd_bwd(fn, response, *args, **kwargs):
    r = response.detach().clone().requires_grad_()
    amb, fg = fn(r, *args, **kwargs)
    weights = torch.linspace(-1, 1, amb.numel(), dtype=amb.dtype).reshape(amb.shape)
    (grad,) = torch.autograd.grad((amb * weights).sum(), r)
    return amb.detach(), fg, grad


@pytest.mark.parametrize("variant", ["iou", "half_dice"])
@pytest.mark.parametrize("mask_kind", ["bool", "uint8", "float"])
@pytest.mark.parametrize("shape", [(3, 2, 5, 7, 9), (2, 1, 4, 5, 3), (1, 3, 40, 8, 8)])
def test_matches_reference(seed, poison, variant, mask_kind, shape):
    response, masks, valid = make(*shape, mask_kind=mask_kind)
    want = fwd_bwd(ref.region_ambiguity, response, masks, valid, variant)
    got = fwd_bwd(region_ambiguity, response, masks, valid, variant, backend="cpu")
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float32])
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], **TOL[torch.float32])


def test_float64_tight_and_non_contiguous(seed, poison):
    response, masks, valid = make(dtype=torch.float64, mask_kind="float")
    want = fwd_bwd(ref.region_ambiguity, response, masks, valid)
    got = fwd_bwd(region_ambiguity, non_contiguous(response), non_contiguous(masks), valid)
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float64])
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(seed, dtype):
    response, masks, valid = make(dtype=dtype)
    want = ref.region_ambiguity(response.float(), masks, valid)
    got = region_ambiguity(response, masks, valid)
    assert got[0].dtype == dtype
    torch.testing.assert_close(got[0].float(), want[0], **TOL[dtype])
    assert torch.equal(got[1], want[1])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_edge_cases(seed, backend):
    # empty P: no foreground, ambiguity 1, zero gradient
    response = torch.rand(2, 3, 5, 5, requires_grad=True)
    amb, fg = region_ambiguity(response, torch.zeros(2, 0, 5, 5, dtype=torch.bool), torch.zeros(2, 0, dtype=torch.bool),
                               backend=backend)
    assert torch.equal(amb.detach(), torch.ones(2, 3)) and (fg == -1).all()
    amb.sum().backward()
    assert torch.equal(response.grad, torch.zeros_like(response))
    # all masks invalid: same as no masks
    _, masks, _ = make(2, 3, 4, 5, 5)
    amb, fg = region_ambiguity(response.detach(), masks, torch.zeros(2, 4, dtype=torch.bool), backend=backend)
    assert torch.equal(amb, torch.ones(2, 3)) and (fg == -1).all()
    # all-zero response: every score 0, foreground = first valid mask (tie rule), IoUs 0
    valid = torch.tensor([[False, True, True, False], [True, True, True, True]])
    amb, fg = region_ambiguity(torch.zeros(2, 3, 5, 5), masks, valid, backend=backend)
    assert fg.tolist() == [[1, 1, 1], [0, 0, 0]]
    assert torch.equal(amb, torch.ones(2, 3))
    # B = 0
    amb, fg = region_ambiguity(torch.rand(0, 2, 4, 4), torch.zeros(0, 3, 4, 4, dtype=torch.bool), backend=backend)
    assert amb.shape == fg.shape == (0, 2)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_tie_rule_lowest_proposal(backend):
    response = torch.zeros(1, 1, 4, 4)
    response[0, 0, 1, 1] = 1.0
    masks = torch.zeros(1, 3, 4, 4, dtype=torch.bool)
    masks[0, 0, 3, 3] = True           # score 0
    masks[0, 1, :2, :2] = True         # score 1
    masks[0, 2, 1:, 1:] = True         # score 1 too: tie, proposal 1 wins
    amb, fg = region_ambiguity(response, masks, backend=backend)
    assert fg.tolist() == [[1]]
    # hand value: IoU(r, m1) = 1 / (1 + 4 - 1), background = m0 | m2 = m2 (9 px): IoU = 1 / (1 + 9 - 1)
    torch.testing.assert_close(amb, torch.tensor([[1 - (1 / (4 + 1e-5) - 1 / (9 + 1e-5))]]))


def test_gradcheck_float64(seed):
    response, masks, valid = make(2, 2, 4, 4, 5, dtype=torch.float64, mask_kind="float")
    response = (response + 0.01 * torch.rand_like(response)).requires_grad_()  # break ties: argmax stable under eps
    for variant in ("iou", "half_dice"):
        assert torch.autograd.gradcheck(lambda r: region_ambiguity(r, masks, valid, variant)[0], (response,))
        assert torch.autograd.gradcheck(lambda r: ref.region_ambiguity(r, masks, valid, variant)[0], (response,))


def test_opcheck(seed):
    response, masks, valid = make()
    for args in [(response.requires_grad_(), masks, valid, "iou", 1e-5, True),
                 (response.detach().double(), masks, valid, "half_dice", 1e-3, False),
                 (response.detach(), masks[:, :0], valid[:, :0], "iou", 1e-5, False)]:
        torch.library.opcheck(torch.ops.dapo_fast.region_ambiguity.default, args)


def test_losses():
    amb = torch.tensor([[0.5, 0.7, 0.6], [0.9, 0.8, 0.7]], requires_grad=True)
    loss = ras_loss(amb)
    torch.testing.assert_close(loss, torch.tensor(0.2 / 4))  # one rise of 0.2 over 2 images x 2 steps
    loss.backward()
    torch.testing.assert_close(amb.grad, torch.tensor([[-0.25, 0.25, 0.0], [0.0, 0.0, 0.0]]))
    assert ras_loss(amb[:, :1]).item() == 0
    s = torch.tensor([[0.1, 0.9, 0.3]], requires_grad=True)
    y = straight_through_onehot(s)
    assert y.tolist() == [[0.0, 1.0, 0.0]]
    same = iad_loss(s, torch.tensor([[[0.0, 1.0, 0.5]]]))
    different = iad_loss(s, torch.tensor([[[1.0, 0.0, 0.5]], ]))
    assert same.item() == 1.0 and different.item() == -1.0
    different.backward()
    torch.testing.assert_close(s.grad, torch.tensor([[2.0, -2.0, 0.0]]))  # d/dy_a of -(y_a - y_d)^2
    valid = torch.tensor([[True, False, True]])
    torch.testing.assert_close(straight_through_onehot(s, valid), torch.tensor([[0.0, 0.0, 1.0]]))


@pytest.mark.slow
def test_compile_fullgraph_pcnet_loss_step(seed):
    response, masks, valid = make(2, 3, 6, 8, 8)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    others = torch.randn(2, 3, 1, 8, 8, requires_grad=True)

    def step(logits, others):
        r = torch.sigmoid(logits)
        ras, iad = pcnet_losses(r, masks, valid, "half_dice", torch.sigmoid(others))
        return ras + iad

    compiled = torch.compile(step, fullgraph=True)
    want = step(logits, others)
    g_want = torch.autograd.grad(want, (logits, others))
    got = compiled(logits, others)
    g_got = torch.autograd.grad(got, (logits, others))
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, **TOL[torch.float32])
    assert g_got[0].abs().sum() > 0


def test_bad_inputs():
    r = torch.rand(2, 3, 5, 5)
    with pytest.raises(ValueError, match="masks"):
        region_ambiguity(r, torch.zeros(2, 4, 5, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="response"):
        region_ambiguity(torch.rand(2, 5, 5), torch.zeros(2, 4, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask_valid"):
        region_ambiguity(r, torch.zeros(2, 4, 5, 5, dtype=torch.bool), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="variant"):
        region_ambiguity(r, torch.zeros(2, 4, 5, 5, dtype=torch.bool), variant="dice")
    with pytest.raises(TypeError, match="masks"):
        region_ambiguity(r, torch.zeros(2, 4, 5, 5, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="variant"):
        torch.ops.dapo_fast.region_ambiguity(r, torch.zeros(2, 4, 5, 5, dtype=torch.bool),
                                             torch.ones(2, 4, dtype=torch.bool), "dice", 1e-5, False)
    with pytest.raises(RuntimeError, match="mask_valid"):
        torch.ops.dapo_fast.region_ambiguity(r, torch.zeros(2, 4, 5, 5, dtype=torch.bool),
                                             torch.ones(2, 4, dtype=torch.uint8), "iou", 1e-5, False)


@pytest.mark.triton
@pytest.mark.parametrize("variant", ["iou", "half_dice"])
def test_triton_matches_reference(seed, variant):
    response, masks, valid = make(2, 2, 4, 5, 7)
    valid[1] = False  # no valid proposal in image 1
    want = fwd_bwd(ref.region_ambiguity, response, masks, valid, variant)
    got = fwd_bwd(region_ambiguity, response, masks, valid, variant, backend="triton")
    torch.testing.assert_close(got[0], want[0], **TOL[torch.float32])
    assert torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], **TOL[torch.float32])


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton.region_ambiguity import region_ambiguity_triton

    response, masks, valid = make(1, 2, 3, 4, 4)
    torch.library.opcheck(region_ambiguity_triton, (response.requires_grad_(), masks, valid, "iou", 1e-5, True),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    response, masks, valid = make(3, 3, 12, 16, 16)
    want = fwd_bwd(ref.region_ambiguity, response, masks, valid)
    got = fwd_bwd(region_ambiguity, response.cuda(), masks.cuda(), valid.cuda(), backend=backend)
    torch.testing.assert_close(got[0].cpu(), want[0], **TOL[torch.float32])
    assert torch.equal(got[1].cpu(), want[1])
    torch.testing.assert_close(got[2].cpu(), want[2], **TOL[torch.float32])
    op = (torch.ops.dapo_fast.region_ambiguity.default if backend == "cuda"
          else torch.ops.dapo_fast.region_ambiguity_triton.default)
    torch.library.opcheck(op, (response.cuda().requires_grad_(), masks.cuda(), valid.cuda(), "iou", 1e-5, True))
