"""diffusion_guided_loss (DAPO eq. 5) vs the reference."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import diffusion_guided_loss
from dapo_fast.ops._reference.diffusion_guided_loss import diffusion_guided_loss as reference
from tests._helpers import TOL, compiled_matches_eager, non_contiguous
from tests.ops._entity_maps import assert_matches, fwd_bwd, make

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def per_sample(h, a, v, **kwargs):
    return diffusion_guided_loss(h, a, v, "none", **kwargs)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("entities", [0, 1, 2, 7])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_reference(seed, poison, backend, entities, reduction):
    h, a, valid = make(entities=entities)

    def want_fn(h, a, valid):
        per = reference(h, a, valid)
        return {"none": per, "sum": per.sum(), "mean": per.sum() / h.shape[0]}[reduction]

    assert_matches(diffusion_guided_loss, want_fn, h, a, valid, reduction=reduction, backend=backend)


def test_targets_get_the_opposite_gradient_and_invalid_entities_none(seed):
    h, a, valid = make(batch=4, entities=5)
    _, grad_h, grad_a = fwd_bwd(per_sample, h, a, valid)
    torch.testing.assert_close(grad_a, -grad_h)
    assert grad_h[~valid].abs().max() == 0 and grad_h[valid].abs().max() > 0


def test_non_contiguous_and_float64(seed, poison):
    h, a, valid = make(dtype=torch.float64)
    torch.testing.assert_close(per_sample(non_contiguous(h), non_contiguous(a), valid), reference(h, a, valid),
                               **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(seed, dtype):
    h, a, valid = make(dtype=dtype)
    got = per_sample(h, a, valid)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), reference(h.float(), a.float(), valid), **TOL[dtype])


def test_gradcheck_float64(seed):
    h, a, valid = make(batch=3, entities=3, height=4, width=5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda h, a: per_sample(h, a, valid), (h.requires_grad_(), a.requires_grad_()))


def test_opcheck(seed):
    h, a, valid = make(batch=3, entities=3, height=5, width=6)
    op = torch.ops.dapo_fast.diffusion_guided_loss.default
    torch.library.opcheck(op, (h.clone().requires_grad_(), a.clone().requires_grad_(), valid))
    torch.library.opcheck(op, (h.double().requires_grad_(), a.double(), valid))
    torch.library.opcheck(torch.ops.dapo_fast.diffusion_guided_loss_backward.default, (torch.randn(3), h, a, valid))


@pytest.mark.slow
def test_compile_fullgraph_guided_step(seed):
    """DAPO's use: heatmaps from a head fitted to the final step's attention maps (eq. 5, mean over
    the batch); gradients to the head's input and to the targets."""
    feat, a, valid = make(batch=2, entities=3, height=8, width=8)
    head = torch.nn.Conv2d(3, 3, 3, padding=1)

    def step(feat, targets):
        return diffusion_guided_loss(torch.sigmoid(head(feat)), targets, valid)

    _, grads = compiled_matches_eager(step, feat.requires_grad_(), a.requires_grad_())
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.triton
@pytest.mark.parametrize("entities", [0, 1, 7])
def test_triton_matches_reference(seed, entities):
    h, a, valid = make(batch=3, entities=entities, height=9, width=11)
    assert_matches(per_sample, reference, h, a, valid, backend="triton")


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton.diffusion_guided_loss import diffusion_guided_loss_triton

    h, a, valid = make(batch=2, entities=3, height=4, width=5)
    torch.library.opcheck(diffusion_guided_loss_triton, (h.clone().requires_grad_(), a.clone().requires_grad_(), valid),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    h, a, valid = make(batch=5, entities=7, height=64, width=64)
    assert_matches(per_sample, reference, h.cuda(), a.cuda(), valid.cuda(), backend=backend)
    op = (torch.ops.dapo_fast.diffusion_guided_loss.default if backend == "cuda"
          else torch.ops.dapo_fast.diffusion_guided_loss_triton.default)
    torch.library.opcheck(op, (h.cuda().requires_grad_(), a.cuda().requires_grad_(), valid.cuda()))


class TestBadInputs:
    def test_shape_mismatch(self):
        h, a, valid = make()
        with pytest.raises(ValueError, match="attn_targets"):
            diffusion_guided_loss(h, a[..., :3], valid)

    def test_reduction(self):
        h, a, valid = make()
        with pytest.raises(ValueError, match="reduction"):
            diffusion_guided_loss(h, a, valid, reduction="avg")

    def test_cpp_checks_name_the_argument(self):
        h, a, valid = make()
        with pytest.raises(RuntimeError, match="grad must have shape"):
            torch.ops.dapo_fast.diffusion_guided_loss_backward(torch.ones(7), h, a, valid)
