"""Fakes and autograd of box_encode and box_decode (``dapo_fast::box_encode``,
``dapo_fast::box_decode`` and their ``_backward`` ops). Both are differentiable in their two box
tensors; the backward ops return both gradients."""
import torch


def fake_rows(a, b, *args):
    """Forward fake of both ops: one [K, 4] row of deltas (or boxes) per input row."""
    return torch.empty_like(a, memory_format=torch.contiguous_format)


def fake_rows_backward(grad, a, b, *args):
    return (torch.empty_like(a, memory_format=torch.contiguous_format),
            torch.empty_like(b, memory_format=torch.contiguous_format))


def setup_context(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.args = inputs[2:]


def make_backward(backward_op):
    """The backward of box_encode or box_decode, computed by its ``backward_op``."""
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a, grad_b = backward_op(grad, a, b, *ctx.args)
        return (grad_a, grad_b) + (None,) * len(ctx.args)

    return backward


def register(forward, backward) -> None:
    """Fakes and autograd for one of the two ops and its backward op."""
    torch.library.register_fake(forward, fake_rows)
    torch.library.register_fake(backward, fake_rows_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
