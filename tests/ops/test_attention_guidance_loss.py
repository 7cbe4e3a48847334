"""attention_guidance_loss (DAPO eq. 3) vs the literal pairwise reference."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import attention_guidance_loss
from dapo_fast.ops._reference import attention_guidance_loss as reference
from tests._helpers import TOL, compiled_matches_eager, non_contiguous
from tests.ops._entity_maps import assert_matches, fwd_bwd, make

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")

ENTITY_COUNTS = [0, 1, 2, 7]


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("entities", ENTITY_COUNTS)
@pytest.mark.parametrize("size", [(9, 11), (33, 40)])
def test_matches_pairwise_reference(seed, poison, backend, entities, size):
    h, a, valid = make(entities=entities, height=size[0], width=size[1])
    assert_matches(attention_guidance_loss, reference.attention_guidance_loss, h, a, valid, backend=backend)


def test_identity_and_edge_cases(seed):
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
    torch.testing.assert_close(attention_guidance_loss(non_contiguous(h), non_contiguous(a), valid),
                               reference.attention_guidance_loss(h, a, valid), **TOL[torch.float64])


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


def test_opcheck(seed):
    h, a, valid = make(batch=3, entities=3, height=5, width=6)
    op = torch.ops.dapo_fast.attention_guidance_loss.default
    torch.library.opcheck(op, (h.clone().requires_grad_(), a.clone().requires_grad_(), valid))
    torch.library.opcheck(op, (h.double().requires_grad_(), a.double(), valid))
    g = torch.randn(3)
    for want_h in (True, False):
        torch.library.opcheck(torch.ops.dapo_fast.attention_guidance_loss_backward.default, (g, h, a, valid, want_h))


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
def test_compile_fullgraph_guidance_step(seed):
    """DAPO's use: heatmaps from a head, the mean L_A against the attention maps; gradients to the
    attention maps and (through the heatmaps) to the head's input."""
    feat, a, valid = make(batch=2, entities=3, height=8, width=8)
    head = torch.nn.Conv2d(3, 3, 3, padding=1)

    def step(feat, attn):
        return attention_guidance_loss(torch.sigmoid(head(feat)), attn, valid).mean()

    _, grads = compiled_matches_eager(step, feat.requires_grad_(), a.requires_grad_())
    assert all(g.abs().sum() > 0 for g in grads)


@pytest.mark.triton
@pytest.mark.parametrize("entities", [0, 1, 7])
def test_triton_matches_reference(seed, entities):
    h, a, valid = make(batch=3, entities=entities, height=9, width=11)
    assert_matches(attention_guidance_loss, reference.attention_guidance_loss, h, a, valid, backend="triton")


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton.attention_guidance_loss import attention_guidance_loss_triton

    h, a, valid = make(batch=2, entities=3, height=4, width=5)
    torch.library.opcheck(attention_guidance_loss_triton, (h.clone().requires_grad_(), a.clone().requires_grad_(), valid),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    h, a, valid = make(batch=5, entities=7, height=64, width=64)
    assert_matches(attention_guidance_loss, reference.attention_guidance_loss, h.cuda(), a.cuda(), valid.cuda(),
                   backend=backend)
    op = (torch.ops.dapo_fast.attention_guidance_loss.default if backend == "cuda"
          else torch.ops.dapo_fast.attention_guidance_loss_triton.default)
    torch.library.opcheck(op, (h.cuda().requires_grad_(), a.cuda().requires_grad_(), valid.cuda()))


class TestBadInputs:
    def test_shape_mismatch(self):
        h, a, valid = make()
        with pytest.raises(ValueError, match="attn_maps"):
            attention_guidance_loss(h, a[:, :2], valid)

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

    def test_cpp_checks_name_the_argument(self):
        h, a, valid = make()
        with pytest.raises(RuntimeError, match="entity_valid must be a bool"):
            torch.ops.dapo_fast.attention_guidance_loss(h, a, valid.float())
