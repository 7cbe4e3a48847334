"""cross_attention_probs_mean: every backend vs the materialising reference."""
import pytest
import torch

import dapo_fast
from dapo_fast.ops import cross_attention_probs_mean
from dapo_fast.ops._reference.cross_attention_probs_mean import cross_attention_probs_mean as reference
from tests._helpers import TOL, compiled_matches_eager, non_contiguous

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")


def make(batch=2, heads=3, rows=37, keys=11, dim=13, dtype=torch.float32, diffusers_layout=False):
    if diffusers_layout:  # [B, HW, heads, d] viewed as [B, heads, HW, d], as diffusers' processors do
        q = torch.randn(batch, rows, heads, dim, dtype=dtype).transpose(1, 2)
        k = torch.randn(batch, keys, heads, dim, dtype=dtype).transpose(1, 2)
    else:
        q = torch.randn(batch, heads, rows, dim, dtype=dtype)
        k = torch.randn(batch, heads, keys, dim, dtype=dtype)
    return q, k


def fwd_bwd(fn, q, k, *args, **kwargs):
    q = q.detach().clone().requires_grad_()
    k = k.detach().clone().requires_grad_()
    out = fn(q, k, *args, **kwargs)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grad_q, grad_k = torch.autograd.grad(out, (q, k), grad_out)
    return out.detach(), grad_q, grad_k


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("shape", [(2, 3, 37, 11, 13), (1, 8, 256, 77, 40), (3, 1, 5, 1, 7), (1, 2, 9, 33, 160)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_matches_reference(seed, poison, backend, shape, with_bias):
    q, k = make(*shape)
    bias = torch.randn(shape[0], shape[3]) if with_bias else None
    want, want_gq, want_gk = fwd_bwd(reference, q, k, 0.37, bias, 1.5)
    got, got_gq, got_gk = fwd_bwd(cross_attention_probs_mean, q, k, 0.37, None, 1.5, key_bias=bias, backend=backend)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(got_gq, want_gq, **TOL[torch.float32])
    torch.testing.assert_close(got_gk, want_gk, **TOL[torch.float32])


@pytest.mark.parametrize("layout", ["diffusers", "non_contiguous"])
def test_layouts(seed, poison, layout):
    q, k = make(diffusers_layout=layout == "diffusers")
    if layout == "non_contiguous":
        q, k = non_contiguous(q), non_contiguous(k)
    want = reference(q, k, 0.3)
    torch.testing.assert_close(cross_attention_probs_mean(q, k, 0.3, backend="cpu"), want, **TOL[torch.float32])


def test_rows_sum_to_weight_and_masked_keys_get_zero(seed):
    q, k = make(rows=20, keys=9)
    bias = torch.zeros(2, 9)
    bias[:, 5:] = float("-inf")
    out = cross_attention_probs_mean(q, k, 0.5, weight=0.25, key_bias=bias, backend="cpu")
    torch.testing.assert_close(out.sum(-1), torch.full((2, 20), 0.25))
    assert out[:, :, 5:].abs().max() < 1e-30


def test_accumulates_into_out(seed, poison):
    q, k = make()
    q2, k2 = make()
    out = torch.full((2, 37, 11), 0.5)
    result = cross_attention_probs_mean(q, k, 0.3, out=out, weight=0.5, backend="cpu")
    assert result is out
    cross_attention_probs_mean(q2, k2, 0.3, out=out, weight=2.0, backend="cpu")
    want = 0.5 + reference(q, k, 0.3, None, 0.5) + reference(q2, k2, 0.3, None, 2.0)
    torch.testing.assert_close(out, want, **TOL[torch.float32])


def test_accumulate_keeps_graph_when_differentiable(seed):
    q, k = make()
    q.requires_grad_()
    out = torch.zeros(2, 37, 11)
    cross_attention_probs_mean(q, k, 0.3, out=out, backend="cpu")
    (grad,) = torch.autograd.grad(out.pow(2).sum(), q)
    qr = q.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(reference(qr, k, 0.3).pow(2).sum(), qr)
    torch.testing.assert_close(grad, want, **TOL[torch.float32])


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_empty(backend):
    for shape in [(0, 2, 5, 7, 3), (2, 2, 0, 7, 3), (2, 2, 5, 0, 3)]:
        q, k = make(*shape)
        out = cross_attention_probs_mean(q, k, 0.3, backend=backend)
        assert out.shape == (shape[0], shape[2], shape[3])
    q, k = make(2, 2, 5, 7, 0)  # d = 0: every score is 0, uniform rows
    torch.testing.assert_close(cross_attention_probs_mean(q, k, 0.3, backend=backend), torch.full((2, 5, 7), 1 / 7))


def test_float64_tight_and_gradcheck(seed):
    q, k = make(2, 3, 6, 5, 4, dtype=torch.float64)
    bias = torch.randn(2, 5, dtype=torch.float64)
    torch.testing.assert_close(cross_attention_probs_mean(q, k, 0.7, key_bias=bias), reference(q, k, 0.7, bias),
                               **TOL[torch.float64])
    q.requires_grad_()
    k.requires_grad_()
    assert torch.autograd.gradcheck(lambda q, k: cross_attention_probs_mean(q, k, 0.7, weight=1.3, key_bias=bias),
                                    (q, k))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision(seed, dtype):
    q, k = make(dtype=dtype)
    got = cross_attention_probs_mean(q, k, 0.3)
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), reference(q.float(), k.float(), 0.3), **TOL[dtype])


def test_opcheck(seed):
    q, k = make(2, 3, 9, 5, 4)
    bias = torch.randn(2, 5)
    for args in [(q, k, 0.3, None, 1.0), (q.double(), k.double(), 0.5, bias.double(), 2.0), (q, k, 0.3, bias, 0.5)]:
        args = (args[0].clone().requires_grad_(), args[1].clone().requires_grad_()) + args[2:]
        torch.library.opcheck(torch.ops.dapo_fast.cross_attention_probs_mean.default, args)
    torch.library.opcheck(torch.ops.dapo_fast.cross_attention_probs_mean_accumulate.default,
                          (torch.zeros(2, 9, 5), q, k, 0.3, bias, 1.0))
    torch.library.opcheck(torch.ops.dapo_fast.cross_attention_probs_mean_backward.default,
                          (torch.randn(2, 9, 5), q, k, 0.3, bias, 1.0))


def test_backward_deterministic_across_threads(seed):
    q, k = make(2, 4, 50, 11, 16)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (threads, 1):
            torch.set_num_threads(n)
            results.append(fwd_bwd(cross_attention_probs_mean, q, k, 0.3))
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.triton
def test_triton_matches_reference(seed):
    q, k = make(2, 2, 21, 7, 16, diffusers_layout=True)
    bias = torch.randn(2, 7)
    want, want_gq, want_gk = fwd_bwd(reference, q, k, 0.3, bias, 0.5)
    got, got_gq, got_gk = fwd_bwd(cross_attention_probs_mean, q, k, 0.3, None, 0.5, key_bias=bias, backend="triton")
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    torch.testing.assert_close(got_gq, want_gq, **TOL[torch.float32])
    torch.testing.assert_close(got_gk, want_gk, **TOL[torch.float32])
    out = torch.ones(2, 21, 7)
    cross_attention_probs_mean(q, k, 0.3, out=out, key_bias=bias, backend="triton")
    torch.testing.assert_close(out, 1 + reference(q, k, 0.3, bias), **TOL[torch.float32])


@pytest.mark.triton
def test_triton_opcheck_under_interpreter(seed):
    # aot_dispatch cannot run Triton's interpreter on fake storages; the full opcheck is the cuda test below
    from dapo_fast.ops._triton.cross_attention_probs_mean import cross_attention_probs_mean_triton

    q, k = make(1, 2, 5, 3, 16)
    torch.library.opcheck(cross_attention_probs_mean_triton, (q.requires_grad_(), k, 0.3, None, 1.0),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["cuda", "triton"])
def test_gpu_backends(seed, backend):
    q, k = make(2, 8, 256, 77, 40, diffusers_layout=True)
    bias = torch.randn(2, 77)
    want, want_gq, want_gk = fwd_bwd(reference, q, k, 0.3, bias, 1.0)
    got, got_gq, got_gk = fwd_bwd(cross_attention_probs_mean, q.cuda(), k.cuda(), 0.3, key_bias=bias.cuda(),
                                  backend=backend)
    torch.testing.assert_close(got.cpu(), want, **TOL[torch.float32])
    torch.testing.assert_close(got_gq.cpu(), want_gq, **TOL[torch.float32])
    torch.testing.assert_close(got_gk.cpu(), want_gk, **TOL[torch.float32])
    op = (torch.ops.dapo_fast.cross_attention_probs_mean.default if backend == "cuda"
          else torch.ops.dapo_fast.cross_attention_probs_mean_triton.default)
    torch.library.opcheck(op, (q.cuda().requires_grad_(), k.cuda(), 0.3, bias.cuda(), 1.0))


class TestBadInputs:
    def test_rank(self):
        q, k = make()
        with pytest.raises(ValueError, match="q must have 4 dimensions"):
            cross_attention_probs_mean(q[0], k, 0.3)

    def test_key_shape(self):
        q, k = make()
        with pytest.raises(ValueError, match="k must have shape"):
            cross_attention_probs_mean(q, k[:, :2], 0.3)

    def test_dtype_mismatch(self):
        q, k = make()
        with pytest.raises(TypeError, match="q and k"):
            cross_attention_probs_mean(q, k.double(), 0.3)

    def test_out_shape(self):
        q, k = make()
        with pytest.raises(ValueError, match="out must have shape"):
            cross_attention_probs_mean(q, k, 0.3, out=torch.zeros(2, 37, 12))

    def test_key_bias_shape(self):
        q, k = make()
        with pytest.raises(ValueError, match="key_bias must have shape"):
            cross_attention_probs_mean(q, k, 0.3, key_bias=torch.zeros(2, 10))

    def test_cpp_checks_name_the_argument(self):
        q, k = make()
        with pytest.raises(RuntimeError, match="key_bias must have shape"):
            torch.ops.dapo_fast.cross_attention_probs_mean(q, k, 0.3, torch.zeros(3, 11), 1.0)
        with pytest.raises(RuntimeError, match="out must have shape"):
            torch.ops.dapo_fast.cross_attention_probs_mean_accumulate(torch.zeros(2, 37, 3), q, k, 0.3, None, 1.0)

    def test_bad_backend(self):
        q, k = make()
        with pytest.raises(ValueError, match="backend"):
            cross_attention_probs_mean(q, k, 0.3, backend="gpu")


def test_no_per_head_probability_allocation(seed):
    """At SD-1.4's 16x16 size the fused op never allocates [B, heads, HW, T] (the reference does)."""
    from dapo_fast.bench.runner import peak_memory_bytes

    q, k = make(2, 8, 256, 77, 160, diffusers_layout=True)
    per_head_bytes = 2 * 8 * 256 * 77 * 4
    out = torch.zeros(2, 256, 77)
    with torch.no_grad():
        ours = peak_memory_bytes(lambda: cross_attention_probs_mean(q, k, 160 ** -0.5, out=out, backend="cpu"))
        theirs = peak_memory_bytes(lambda: reference(q, k, 160 ** -0.5))
    assert theirs >= per_head_bytes
    assert ours < per_head_bytes // 4, (ours, per_head_bytes)


def test_compile_fullgraph_layer_mean(seed):
    """Two layers accumulated into one buffer (the in-place op) plus a differentiable use."""
    q1, k1 = make(2, 3, 16, 7, 8, diffusers_layout=True)
    q2, k2 = make(2, 3, 16, 7, 8)

    def layer_mean(q1, k1, q2, k2):
        buffer = torch.zeros(2, 16, 7)
        with torch.no_grad():
            cross_attention_probs_mean(q1, k1, 0.3, out=buffer, weight=0.5)
        fused = cross_attention_probs_mean(q2, k2, 0.3, weight=0.5)
        return buffer + fused

    (got,), grads = compiled_matches_eager(layer_mean, q1, k1, q2.requires_grad_(), k2.requires_grad_())
    torch.testing.assert_close(got, 0.5 * (reference(q1, k1, 0.3) + reference(q2, k2, 0.3)), **TOL[torch.float32])
    assert len(grads) == 2 and all(g.abs().sum() > 0 for g in grads)
