"""dapo_grounding_loss (eq. 6) on top of the fused L_D."""
import pytest
import torch

from dapo_fast.losses import dapo_grounding_loss


def test_mixes_task_and_guided_loss(seed):
    h = torch.rand(4, 3, 8, 8, requires_grad=True)
    a = torch.rand(4, 3, 8, 8)
    valid = torch.rand(4, 3) > 0.3
    task = torch.rand(4, requires_grad=True)
    real = torch.tensor([True, False, True, False])
    got = dapo_grounding_loss(task, h, a, real, valid)
    per = (((h - a) ** 2).sum((2, 3)) * valid).sum(1)
    want = torch.where(real, task, per).mean()
    torch.testing.assert_close(got, want)
    (gh,) = torch.autograd.grad(got, h)
    (wh,) = torch.autograd.grad(want, h)
    torch.testing.assert_close(gh, wh)
    assert gh[0].abs().max() == 0  # a real image's heatmap gets no L_D gradient


def test_bad_inputs():
    h = torch.rand(2, 1, 4, 4)
    with pytest.raises(ValueError, match="task_loss"):
        dapo_grounding_loss(torch.rand(3), h, h, torch.tensor([True, False]))
    with pytest.raises(ValueError, match="is_real"):
        dapo_grounding_loss(torch.rand(2), h, h, torch.tensor([1, 0]))
