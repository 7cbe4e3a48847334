"""Small helpers the op tests share."""
import torch

# tolerance per dtype for comparing a backend with the reference
TOL = {
    torch.float64: dict(rtol=1e-10, atol=1e-10),
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=5e-2, atol=5e-2),
}

CPU_BACKENDS = ["cpu", "reference"]


def poisoned_empty_like(t: torch.Tensor) -> torch.Tensor:
    """NaN-filled buffer: a kernel that forgets to write an element leaves NaN behind."""
    return torch.full_like(t, float("nan"))


def non_contiguous(t: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous strides (every other element of a twice-wider last dim)."""
    wide = torch.empty(*t.shape[:-1], t.shape[-1] * 2, dtype=t.dtype, device=t.device)
    out = wide[..., ::2]
    out.copy_(t)
    assert not out.is_contiguous() or t.numel() <= 1
    return out.requires_grad_(t.requires_grad)


def compiled_matches_eager(fn, *args, tol=None):
    """Runs ``fn(*args)`` eagerly and under ``torch.compile(fullgraph=True)`` on fresh copies of
    the tensor arguments; asserts equal outputs and, for the tensor arguments that require grad,
    equal gradients of a fixed weighted sum of the outputs that require grad. Returns the compiled
    run's (outputs, gradients) so a test can also check them against what it expects."""
    tol = TOL[torch.float32] if tol is None else tol

    def run(f):
        inputs = [a.detach().clone().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a
                  for a in args]
        out = f(*inputs)
        outs = tuple(out) if isinstance(out, (tuple, list)) else (out,)
        leaves = [x for x in inputs if isinstance(x, torch.Tensor) and x.requires_grad]
        differentiable = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
        grads = ()
        if leaves and differentiable:
            total = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).reshape(o.shape)).sum()
                        for o in differentiable)
            grads = torch.autograd.grad(total, leaves, allow_unused=True, materialize_grads=True)
        return tuple(o.detach() if isinstance(o, torch.Tensor) else o for o in outs), grads

    want, want_grads = run(fn)
    got, got_grads = run(torch.compile(fn, fullgraph=True))
    torch.testing.assert_close(got, want, **tol, equal_nan=True)
    assert len(got_grads) == len(want_grads)
    torch.testing.assert_close(got_grads, want_grads, **tol)
    return got, got_grads
