"""attention_guidance_loss (eq. 3) and diffusion_guided_loss (eq. 5) vs the literal references."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import attention_guidance_loss, diffusion_guided_loss
from dapo_fast.ops._reference import dapo_losses as reference
from tests._helpers import TOL, non_contiguous

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")

ENTITY_COUNTS = [0, 1, 2, 7]


def make(batch=3, entities=4, height=9, width=11, dtype=torch.float32, p_valid=0.7):
    h = torch.rand(batch, entities, height, width, dtype=dtype)
    a = torch.rand(batch, entities, height, width, dtype=dtype)
    valid = torch.rand(batch, entities) < p_valid
    if batch > 1 and entities > 1:
        valid[0] = True      # every entity valid
        valid[1, 1:] = False  # a single valid entity: loss 0, zero gradient
    return h, a, valid


def fwd_bwd(fn, h, a, valid, **kwargs):
    h = h.detach().clone().requires_grad_()
    a = a.detach().clone().requires_grad_()
    out = fn(h, a, valid, **kwargs)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grad_h, grad_a = torch.autograd.grad(out, (h, a), grad_out, allow_unused=True, materialize_grads=True)
    return out.detach(), grad_h, grad_a


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("entities", ENTITY_COUNTS)
@pytest.mark.parametrize("size", [(9, 11), (33, 40)])
def test_guidance_matches_pairwise_reference(seed, poison, backend, entities, size):
    h, a, valid = make(entities=entities, height=size[0], width=size[1])
    want = fwd_bwd(reference.attention_guidance_loss, h, a, valid)
    got = fwd_bwd(attention_guidance_loss, h, a, valid, backend=backend)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("entities", ENTITY_COUNTS)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_guided_matches_reference(seed, poison, backend, entities, reduction):
    h, a, valid = make(entities=entities)

    def want_fn(h, a, valid):
        per = reference.diffusion_guided_loss(h, a, valid)
        return {"none": per, "sum": per.sum(), "mean": per.sum() / h.shape[0]}[reduction]

    want = fwd_bwd(want_fn, h, a, valid)
    got = fwd_bwd(diffusion_guided_loss, h, a, valid, reduction=reduction, backend=backend)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_guidance_identity_and_edge_cases(seed):
    h, a, valid = make(batch=4, entities=5)
    valid[2] = False            # no valid entity
    valid[3] = False
    valid[3, 4] = True          # one valid entity
    loss, grad_h, grad_a = fwd_bwd(attention_guidance_loss, h, a, valid)
    assert loss[2] == 0 and loss[3] == 0
    assert grad_a[2:].abs().max() == 0 and grad_h[2:].abs().max() == 0
    # invalid entities get no gradient and do not change the loss
    assert grad_a[~valid].abs().max() == 0
    a2 = a.clone()
    a2[~valid] = 123.0
    torch.testing.assert_close(attention_guidance_loss(h, a2, valid), loss.detach())
    # the default is "all valid"
    torch.testing.assert_close(attention_guidance_loss(h, a), attention_guidance_loss(h, a, torch.ones_like(valid)))


def test_vectorised_pairwise_baseline_matches_loop(seed):
    h, a, valid = make(entities=6)
    torch.testing.assert_close(reference.attention_guidance_loss_pairwise_vectorised(h, a, valid),
                               reference.attention_guidance_loss(h, a, valid), rtol=1e-5, atol=1e-5)


def test_non_contiguous_and_float64(seed, poison):
    h, a, valid = make(dtype=torch.float64)
    hn, an = non_contiguous(h), non_contiguous(a)
    torch.testing.assert_close(attention_guidance_loss(hn, an, valid), reference.attention_guidance_loss(h, a, valid),
                               **TOL[torch.float64])
    torch.testing.assert_close(diffusion_guided_loss(hn, an, valid, "none"),
                               reference.diffusion_guided_loss(h, a, valid), **TOL[torch.float64])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(seed, dtype):
    h, a, valid = make(dtype=dtype)
    got = attention_guidance_loss(h, a, valid)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), reference.attention_guidance_loss(h.float(), a.float(), valid),
                               **TOL[dtype])


def test_gradcheck_float64(seed):
    h, a, valid = make(batch=3, entities=3, height=4, width=5, dtype=torch.float64)
    h.requires_grad_()
    a.requires_grad_()
    assert torch.autograd.gradcheck(lambda h, a: attention_guidance_loss(h, a, valid), (h, a))
    assert torch.autograd.gradcheck(lambda h, a: diffusion_guided_loss(h, a, valid, "none"), (h, a))


def test_opcheck(seed):
    h, a, valid = make(batch=3, entities=3, height=5, width=6)
    for name in ("attention_guidance_loss", "diffusion_guided_loss"):
        op = getattr(torch.ops.dapo_fast, name).default
        torch.library.opcheck(op, (h.clone().requires_grad_(), a.clone().requires_grad_(), valid))
        torch.library.opcheck(op, (h.double().requires_grad_(), a.double(), valid))
    g = torch.randn(3)
    for want_h in (True, False):
        torch.library.opcheck(torch.ops.dapo_fast.attention_guidance_loss_backward.default, (g, h, a, valid, want_h))
    torch.library.opcheck(torch.ops.dapo_fast.diffusion_guided_loss_backward.default, (g, h, a, valid))


def test_deterministic_across_threads(seed):
    h, a, valid = make(batch=5, entities=4, height=40, width=50)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (threads, 1):
            torch.set_num_threads(n)
            results.append(fwd_bwd(attention_guidance_loss, h, a, valid))
    finally:
        torch.set_num_threads(threads)
    for x, y in zip(*results):
        assert torch.equal(x, y)


@pytest.mark.slow
def test_compile_fullgraph_training_step(seed):
    """A DAPO-shaped step: heatmaps from a head, L_A against attention maps plus L_D."""
    h_feat, a, valid = make(batch=2, entities=3, height=8, width=8)
    head = torch.nn.Conv2d(3, 3, 3, padding=1)

    def step(feat, attn, targets, valid):
        heat = torch.sigmoid(head(feat))
        return attention_guidance_loss(heat, attn, valid).mean() + diffusion_guided_loss(heat, targets, valid)

    compiled = torch.compile(step, fullgraph=True)
    attn_e = a.clone().requires_grad_()
    attn_c = a.clone().requires_grad_()
    targets = torch.rand_like(a)
    want = step(h_feat, attn_e, targets, valid)
    got = compiled(h_feat, attn_c, targets, valid)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    want.backward()
    got.backward()
    torch.testing.assert_close(attn_c.grad, attn_e.grad, **TOL[torch.float32])


@pytest.mark.triton_interpret
@pytest.mark.parametrize("entities", [0, 1, 7])
def test_triton_matches_reference(seed, entities):
    h, a, valid = make(batch=3, entities=entities, height=9, width=11)
    for fn, ref in ((attention_guidance_loss, reference.attention_guidance_loss),
                    (lambda h, a, v, **kw: diffusion_guided_loss(h, a, v, "none", **kw), reference.diffusion_guided_loss)):
        want = fwd_bwd(ref, h, a, valid)
        got = fwd_bwd(fn, h, a, valid, backend="triton")
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.triton_interpret
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton import dapo_losses as tri

    h, a, valid = make(batch=2, entities=3, height=4, width=5)
    for op in (tri.attention_guidance_loss_triton, tri.diffusion_guided_loss_triton):
        torch.library.opcheck(op, (h.clone().requires_grad_(), a.clone().requires_grad_(), valid),
                              test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    h, a, valid = make(batch=5, entities=7, height=64, width=64)
    for fn, ref in ((attention_guidance_loss, reference.attention_guidance_loss),
                    (lambda h, a, v, **kw: diffusion_guided_loss(h, a, v, "none", **kw), reference.diffusion_guided_loss)):
        want = fwd_bwd(ref, h, a, valid)
        got = fwd_bwd(fn, h.cuda(), a.cuda(), valid.cuda(), backend=backend)
        for g, w in zip(got, want):
            torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-4)


class TestBadInputs:
    def test_shape_mismatch(self):
        h, a, valid = make()
        with pytest.raises(ValueError, match="attn_maps"):
            attention_guidance_loss(h, a[:, :2], valid)
        with pytest.raises(ValueError, match="attn_targets"):
            diffusion_guided_loss(h, a[..., :3], valid)

    def test_rank(self):
        h, a, valid = make()
        with pytest.raises(ValueError, match="heatmaps must have 4 dimensions"):
            attention_guidance_loss(h[0], a[0], valid)

    def test_valid(self):
        h, a, valid = make()
        with pytest.raises(TypeError, match="entity_valid must be a bool"):
            attention_guidance_loss(h, a, valid.float())
        with pytest.raises(ValueError, match="entity_valid must have shape"):
            attention_guidance_loss(h, a, valid[:, :2])

    def test_dtype_mismatch(self):
        h, a, valid = make()
        with pytest.raises(TypeError, match="heatmaps and attn_maps"):
            attention_guidance_loss(h, a.double(), valid)

    def test_reduction(self):
        h, a, valid = make()
        with pytest.raises(ValueError, match="reduction"):
            diffusion_guided_loss(h, a, valid, reduction="avg")

    def test_cpp_checks_name_the_argument(self):
        h, a, valid = make()
        with pytest.raises(RuntimeError, match="entity_valid must be a bool"):
            torch.ops.dapo_fast.attention_guidance_loss(h, a, valid.float())
        with pytest.raises(RuntimeError, match="grad must have shape"):
            torch.ops.dapo_fast.diffusion_guided_loss_backward(torch.ones(7), h, a, valid)
