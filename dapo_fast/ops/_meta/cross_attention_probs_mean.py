"""Fakes and autograd of cross_attention_probs_mean (``dapo_fast::cross_attention_probs_mean``,
its in-place ``_accumulate`` form and their ``_triton`` twins). Differentiable in q and k; the
backward op recomputes the probabilities."""
import torch


def fake_cross_attention_probs_mean(q, k, scale, key_bias, weight):
    torch._check(q.dim() == 4 and k.dim() == 4, lambda: "q and k must have 4 dimensions")
    return q.new_empty((q.shape[0], q.shape[2], k.shape[2]))


def fake_cross_attention_probs_mean_accumulate(out, q, k, scale, key_bias, weight):
    return None


def fake_cross_attention_probs_mean_backward(grad, q, k, scale, key_bias, weight):
    return q.new_empty(q.shape), k.new_empty(k.shape)


def setup_context(ctx, inputs, output):
    q, k, scale, key_bias, weight = inputs
    ctx.save_for_backward(q, k, key_bias)
    ctx.args = (scale, weight)


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad):
        q, k, key_bias = ctx.saved_tensors
        scale, weight = ctx.args
        grad_q, grad_k = backward_op(grad, q, k, scale, key_bias, weight)
        return grad_q, grad_k, None, None, None

    return backward


def register(forward, accumulate, backward) -> None:
    """Fakes of the three ops and the autograd of ``forward`` (``accumulate`` writes in place
    and has none)."""
    torch.library.register_fake(forward, fake_cross_attention_probs_mean)
    torch.library.register_fake(accumulate, fake_cross_attention_probs_mean_accumulate)
    torch.library.register_fake(backward, fake_cross_attention_probs_mean_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
