"""Fakes and autograd of attention_guidance_loss (``dapo_fast::attention_guidance_loss`` and its
``_triton`` twin). Gradients flow to the attention maps, and to the heatmaps only when they
require one (the backward op skips that half otherwise)."""
import torch


def fake_attention_guidance_loss(heatmaps, attn, entity_valid):
    torch._check(heatmaps.dim() == 4, lambda: "heatmaps must have 4 dimensions")
    return heatmaps.new_empty((heatmaps.shape[0],))


def fake_attention_guidance_loss_backward(grad, heatmaps, attn, entity_valid, heatmaps_grad):
    grad_h = heatmaps.new_empty(heatmaps.shape) if heatmaps_grad else heatmaps.new_empty((0,))
    return grad_h, attn.new_empty(attn.shape)


def setup_context(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad):
        heatmaps, attn, entity_valid = ctx.saved_tensors
        want_h = ctx.needs_input_grad[0]
        grad_h, grad_a = backward_op(grad, heatmaps, attn, entity_valid, want_h)
        return (grad_h if want_h else None), grad_a, None

    return backward


def register(forward, backward) -> None:
    torch.library.register_fake(forward, fake_attention_guidance_loss)
    torch.library.register_fake(backward, fake_attention_guidance_loss_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
