"""Random DAPO inputs: per-entity heatmaps and attention maps [B, E, H, W] with validity flags."""
import torch


def make(batch=3, entities=4, height=9, width=11, dtype=torch.float32, p_valid=0.7):
    h = torch.rand(batch, entities, height, width, dtype=dtype)
    a = torch.rand(batch, entities, height, width, dtype=dtype)
    valid = torch.rand(batch, entities) < p_valid
    if batch > 1 and entities > 1:
        valid[0] = True      # every entity valid
        valid[1, 1:] = False  # a single valid entity
    return h, a, valid


def fwd_bwd(fn, h, a, valid, **kwargs):
    """(loss, d/dh, d/da) of ``fn(h, a, valid)`` under a fixed upstream gradient."""
    h = h.detach().clone().requires_grad_()
    a = a.detach().clone().requires_grad_()
    out = fn(h, a, valid, **kwargs)
    grad_out = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    grad_h, grad_a = torch.autograd.grad(out, (h, a), grad_out, allow_unused=True, materialize_grads=True)
    return out.detach(), grad_h, grad_a


def assert_matches(fn, reference, h, a, valid, **kwargs):
    """``fn(h, a, valid, **kwargs)`` (any device) gives the loss and both gradients of
    ``reference`` on the CPU."""
    want = fwd_bwd(reference, h.cpu(), a.cpu(), valid.cpu())
    got = fwd_bwd(fn, h, a, valid, **kwargs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g.cpu(), w, rtol=1e-4, atol=1e-4)
