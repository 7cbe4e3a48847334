"""Fake and autograd of region_ambiguity (``dapo_fast::region_ambiguity`` and its ``_triton`` twin).

The forward also returns d ambiguity / d response (the "field") when ``with_grad`` is set, so the
backward is a broadcast multiply and needs no backward op. First order only.
"""
import torch


def fake_region_ambiguity(response, masks, mask_valid, variant, eps, with_grad):
    b, s = response.shape[0], response.shape[1]
    field = torch.empty_like(response, memory_format=torch.contiguous_format) if with_grad else response.new_empty((0,))
    return response.new_empty((b, s)), response.new_empty((b, s), dtype=torch.int64), field


def setup_context(ctx, inputs, output):
    ctx.with_grad = inputs[5]
    ctx.save_for_backward(output[2])


def backward(ctx, grad_ambiguity, _grad_foreground, _grad_field):
    (field,) = ctx.saved_tensors
    if not ctx.with_grad:
        raise RuntimeError("region_ambiguity was called with with_grad=False; call it with with_grad=True "
                           "(dapo_fast.ops.region_ambiguity does) to differentiate it")
    return grad_ambiguity[:, :, None, None] * field, None, None, None, None, None


def register(forward) -> None:
    torch.library.register_fake(forward, fake_region_ambiguity)
    torch.library.register_autograd(forward, backward, setup_context=setup_context)
