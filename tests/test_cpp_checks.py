"""The compiled ops' shared C++ entries (csrc/<op>/<op>_prepare.h), called through
torch.ops.dapo_fast directly, as a user bypassing the Python fronts would.

The CPU entry and the CUDA glue of an op run the same checks, so every case runs on each device
present: integers the kernels hold in a 32-bit int are refused rather than wrapped, and the
checks that only one device used to make hold on both.
"""
import pytest
import torch

import dapo_fast

pytestmark = pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

WRAPS_TO_3 = 2**32 + 3  # a cast to int32 would make it 3
BELOW_INT32 = -(2**31) - 1  # a cast to int32 would make it 2^31 - 1: an endless sampling loop


def _roi_inputs(device):
    x = torch.randn(1, 2, 6, 6, device=device)
    rois = torch.tensor([[0.0, 0.5, 0.5, 4.0, 5.0]], device=device)
    return x, rois


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("sampling_ratio", [WRAPS_TO_3, BELOW_INT32])
def test_roi_align_refuses_narrowed_sampling_ratio(device, sampling_ratio):
    x, rois = _roi_inputs(device)
    with pytest.raises(RuntimeError, match="sampling_ratio"):
        torch.ops.dapo_fast.roi_align(x, rois, 1.0, 2, 2, sampling_ratio, True)
    grad = torch.randn(1, 2, 2, 2, device=device)
    with pytest.raises(RuntimeError, match="sampling_ratio"):
        torch.ops.dapo_fast.roi_align_backward(grad, rois, 1.0, 2, 2, 1, 2, 6, 6, sampling_ratio, True)


@pytest.mark.parametrize("device", DEVICES)
def test_roi_align_sampling_ratio_in_range_still_runs(device):
    x, rois = _roi_inputs(device)
    three = torch.ops.dapo_fast.roi_align(x, rois, 1.0, 2, 2, 3, True)
    adaptive = torch.ops.dapo_fast.roi_align(x, rois, 1.0, 2, 2, -(2**31), True)  # any value <= 0
    torch.testing.assert_close(adaptive, torch.ops.dapo_fast.roi_align(x, rois, 1.0, 2, 2, 0, True))
    assert three.shape == (1, 2, 2, 2) and torch.isfinite(three).all()


@pytest.mark.parametrize("device", DEVICES)
def test_roi_align_backward_refuses_narrowed_sizes_before_allocating(device):
    _, rois = _roi_inputs(device)
    grad = torch.randn(1, 2, 2, 2, device=device)
    # a [1, 2, 2^32 + 3, 6] float buffer would be 206 GB: the check comes first
    with pytest.raises(RuntimeError, match="height"):
        torch.ops.dapo_fast.roi_align_backward(grad, rois, 1.0, 2, 2, 1, 2, WRAPS_TO_3, 6, 2, True)
    # an element count past int64 is refused naming the sizes, not left to the allocator
    with pytest.raises(RuntimeError, match=r"\[batch_size, channels, height, width\]"):
        torch.ops.dapo_fast.roi_align_backward(grad, rois, 1.0, 2, 2, 2**62, 2, 6, 6, 2, True)
    with pytest.raises(RuntimeError, match="pooled_height"):
        torch.ops.dapo_fast.roi_align(torch.randn(1, 2, 6, 6, device=device), rois, 1.0, WRAPS_TO_3, 2, 2, True)


@pytest.mark.parametrize("device", DEVICES)
def test_roi_align_backward_checks_the_gradient_shape(device):
    _, rois = _roi_inputs(device)
    with pytest.raises(RuntimeError, match="grad must have shape"):
        torch.ops.dapo_fast.roi_align_backward(torch.randn(1, 3, 2, 2, device=device), rois, 1.0, 2, 2, 1, 2, 6, 6,
                                               2, True)


@pytest.mark.parametrize("device", DEVICES)
def test_resized_argmax_refuses_output_sizes_past_int32(device):
    sizes = torch.tensor([[WRAPS_TO_3, 5]], device=device)
    with pytest.raises(RuntimeError, match="sizes"):
        torch.ops.dapo_fast.resized_argmax(torch.rand(1, 4, 4, device=device), sizes)


@pytest.mark.parametrize("device", DEVICES)
def test_pseudo_label_backward_checks_grad_loss(device):
    b, q, k, d = 2, 3, 4, 5
    args = (torch.randn(b, q, d, device=device), torch.randn(b, k, d, device=device),
            torch.randn(b, q, d, device=device), torch.randn(b, k, d, device=device),
            torch.ones(b, q, dtype=torch.bool, device=device), torch.ones(b, k, dtype=torch.bool, device=device), None)
    with pytest.raises(RuntimeError, match="grad_loss"):
        torch.ops.dapo_fast.pseudo_label_contrastive_loss_backward(torch.ones(3, device=device), *args, 1.0, 1.0,
                                                                   "none", "mean")


@pytest.mark.parametrize("device", DEVICES)
def test_proposal_alignment_backward_checks_the_masks_dtype(device):
    grad = torch.randn(1, 2, 3, device=device)
    argmax = torch.zeros(1, 2, 3, dtype=torch.long, device=device)
    masks = torch.ones(1, 3, 4, 4, dtype=torch.int32, device=device)
    with pytest.raises(RuntimeError, match="masks must be bool, uint8"):
        torch.ops.dapo_fast.proposal_alignment_backward(grad, argmax, masks, 4, 4)


@pytest.mark.parametrize("device", DEVICES)
def test_proposal_alignment_backward_ignores_argmax_outside_the_map(device):
    grad = torch.ones(1, 1, 2, device=device)
    argmax = torch.tensor([[[5, 16]]], device=device)  # 16 is past the 4 x 4 map
    masks = torch.ones(1, 2, 4, 4, device=device)
    out = torch.ops.dapo_fast.proposal_alignment_backward(grad, argmax, masks, 4, 4)
    expected = torch.zeros(1, 1, 16, device=device)
    expected[0, 0, 5] = 1.0
    torch.testing.assert_close(out.reshape(1, 1, 16), expected)


@pytest.mark.parametrize("device", DEVICES)
def test_weighted_smooth_l1_backward_checks_grad(device):
    x = torch.randn(5, device=device)
    with pytest.raises(RuntimeError, match="grad"):
        torch.ops.dapo_fast.weighted_smooth_l1_backward(torch.ones((), dtype=torch.float64, device=device), x, x, x,
                                                        1.0, 2)
    with pytest.raises(RuntimeError, match="grad must be a scalar"):
        torch.ops.dapo_fast.weighted_smooth_l1_backward(torch.ones(5, device=device), x, x, x, 1.0, 1)
    with pytest.raises(RuntimeError, match="beta"):
        torch.ops.dapo_fast.weighted_smooth_l1_backward(torch.ones((), device=device), x, x, x, -1.0, 1)


@pytest.mark.parametrize("device", DEVICES)
def test_heatmap_to_box_refuses_empty_maps(device):
    with pytest.raises(RuntimeError, match="non-empty map size"):
        torch.ops.dapo_fast.heatmap_to_box(torch.rand(2, 0, 5, device=device), 0.5, 0.0, False)
    with pytest.raises(RuntimeError, match="rel_threshold"):
        torch.ops.dapo_fast.heatmap_to_box(torch.rand(2, 4, 5, device=device), 1.5, 0.0, False)
    assert torch.ops.dapo_fast.heatmap_to_box(torch.rand(0, 0, 5, device=device), 0.5, 0.0, False).shape == (0, 4)
