"""Fakes and autograd of weighted_smooth_l1 (``dapo_fast::weighted_smooth_l1`` and its backward
op). The loss depends on input - target only, so target gets the negated input gradient."""
import torch


def fake_weighted_smooth_l1(input, target, weight, beta, reduction):
    if reduction == 0:  # "none"
        return torch.empty_like(input, memory_format=torch.contiguous_format)
    return input.new_empty(())


def fake_weighted_smooth_l1_backward(grad, input, target, weight, beta, reduction):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def setup_context(ctx, inputs, output):
    input, target, weight, beta, reduction = inputs
    ctx.save_for_backward(input, target, weight)
    ctx.args = (beta, reduction)


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad):
        input, target, weight = ctx.saved_tensors
        grad_input = backward_op(grad, input, target, weight, *ctx.args)
        return grad_input, -grad_input, None, None, None

    return backward


def register(forward, backward) -> None:
    torch.library.register_fake(forward, fake_weighted_smooth_l1)
    torch.library.register_fake(backward, fake_weighted_smooth_l1_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
