"""Fakes and autograd of roi_align (``dapo_fast::roi_align`` and ``dapo_fast::roi_align_triton``).

Autograd flows to ``input`` only (as in torchvision). The backward op is linear in ``grad`` and is
the adjoint of the forward, so its own gradient is the forward applied to the incoming gradient:
double backward costs one forward.
"""
import torch

from dapo_fast.ops import _checks


def fake_roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned):
    torch._check(input.dim() == 4, lambda: f"input must have 4 dimensions, got {input.dim()}")
    torch._check(rois.dim() == 2 and rois.shape[1] == 5, lambda: "rois must have shape [K, 5]")
    num_rois, channels = rois.shape[0], input.shape[1]
    if _checks.is_channels_last(input):
        return input.new_empty((num_rois, pooled_height, pooled_width, channels)).permute(0, 3, 1, 2)
    return input.new_empty((num_rois, channels, pooled_height, pooled_width))


def fake_roi_align_backward(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
                            width, sampling_ratio, aligned):
    fmt = torch.channels_last if _checks.is_channels_last(grad) else torch.contiguous_format
    return torch.empty((batch_size, channels, height, width), dtype=grad.dtype, device=grad.device, memory_format=fmt)


def setup_context(ctx, inputs, output):
    input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    ctx.input_shape = input.shape
    ctx.channels_last = _checks.is_channels_last(input)


def make_backward(backward_op):
    """The backward of the forward op, computed by ``backward_op``."""
    def backward(ctx, grad):
        (rois,) = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
        batch_size, channels, height, width = ctx.input_shape
        if ctx.channels_last:  # grad_input takes grad's layout: make it the input's
            grad = grad.contiguous(memory_format=torch.channels_last)
        grad_input = backward_op(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels, height,
                                 width, sampling_ratio, aligned)
        return grad_input, None, None, None, None, None, None

    return backward


def setup_context_backward(ctx, inputs, output):
    grad, rois, spatial_scale, pooled_height, pooled_width, _, _, _, _, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.args = (spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)


def make_double_backward(forward_op):
    """The backward of the backward op: ``forward_op`` of the incoming gradient (the adjoint)."""
    def double_backward(ctx, grad_grad_input):
        (rois,) = ctx.saved_tensors
        spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned = ctx.args
        grad_grad = forward_op(grad_grad_input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio,
                               aligned)
        return (grad_grad,) + (None,) * 10

    return double_backward


def register(forward, backward) -> None:
    """Fakes and autograd (first and second order) for one forward/backward pair of ops."""
    torch.library.register_fake(forward, fake_roi_align)
    torch.library.register_fake(backward, fake_roi_align_backward)
    torch.library.register_autograd(forward, make_backward(backward), setup_context=setup_context)
    torch.library.register_autograd(backward, make_double_backward(forward), setup_context=setup_context_backward)
