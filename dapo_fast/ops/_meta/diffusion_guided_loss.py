"""Fakes and autograd of diffusion_guided_loss (``dapo_fast::diffusion_guided_loss`` and its
``_triton`` twin). The loss depends on heatmaps - targets only, so the targets (when they require
grad) get the negated heatmap gradient."""
import torch


def fake_diffusion_guided_loss(heatmaps, targets, entity_valid):
    torch._check(heatmaps.dim() == 4, lambda: "heatmaps must have 4 dimensions")
    return heatmaps.new_empty((heatmaps.shape[0],))


def fake_diffusion_guided_loss_backward(grad, heatmaps, targets, entity_valid):
    return heatmaps.new_empty(heatmaps.shape)


def setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad):
        heatmaps, targets, entity_valid = ctx.saved_tensors
        grad_h = backward_op(grad, heatmaps, targets, entity_valid)
        return grad_h, (-grad_h if ctx.needs_input_grad[1] else None), None

    return backward


def register(forward, backward) -> None:
    torch.library.register_fake(forward, fake_diffusion_guided_loss)
    torch.library.register_fake(backward, fake_diffusion_guided_loss_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
