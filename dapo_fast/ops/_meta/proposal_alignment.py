"""Fakes and autograd of proposal_alignment (``dapo_fast::proposal_alignment`` and its backward
op). The forward also returns the argmax pixel of every score; the backward op scatters each
score's gradient there."""
import torch


def fake_proposal_alignment(response, masks, mask_valid):
    shape = (response.shape[0], response.shape[1], masks.shape[1])
    return response.new_empty(shape), response.new_empty(shape, dtype=torch.int64)


def fake_proposal_alignment_backward(grad, argmax, masks, height, width):
    return grad.new_empty((grad.shape[0], grad.shape[1], height, width))


def setup_context(ctx, inputs, output):
    response, masks, _ = inputs
    ctx.save_for_backward(output[1], masks)
    ctx.size = (response.shape[2], response.shape[3])


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad_scores, _grad_argmax):
        argmax, masks = ctx.saved_tensors
        return backward_op(grad_scores, argmax, masks, *ctx.size), None, None

    return backward


def register(forward, backward) -> None:
    torch.library.register_fake(forward, fake_proposal_alignment)
    torch.library.register_fake(backward, fake_proposal_alignment_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
