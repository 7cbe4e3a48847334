"""Fakes and autograd of soft_iou (``dapo_fast::soft_iou`` and its backward op); differentiable
in ``response``."""
import torch


def fake_soft_iou(response, masks, variant, eps):
    return response.new_empty((response.shape[0], response.shape[1], masks.shape[1]))


def fake_soft_iou_backward(grad, response, masks, variant, eps):
    return torch.empty_like(response, memory_format=torch.contiguous_format)


def setup_context(ctx, inputs, output):
    response, masks, variant, eps = inputs
    ctx.save_for_backward(response, masks)
    ctx.args = (variant, eps)


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad):
        response, masks = ctx.saved_tensors
        return backward_op(grad, response, masks, *ctx.args), None, None, None

    return backward


def register(forward, backward) -> None:
    torch.library.register_fake(forward, fake_soft_iou)
    torch.library.register_fake(backward, fake_soft_iou_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
