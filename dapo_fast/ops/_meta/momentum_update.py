"""Fakes of momentum_update_: the multi-tensor C++ op ``dapo_fast::momentum_update_`` (lists of
tensors) and the per-tensor Triton op ``dapo_fast::momentum_update_triton_``. In place, no autograd."""
import torch


def fake_momentum_update_(teacher, student, momentum):
    # meta/fake tensors land here instead of in the C++ checks: keep the same contract
    devices = {t.device for t in list(teacher) + list(student)}
    torch._check(len(devices) <= 1, lambda: f"teacher and student tensors must share one device, got {devices}")
    return None


def fake_momentum_update_one_(teacher, student, momentum):
    return None


def register(forward) -> None:
    """``forward`` is the multi-tensor op."""
    torch.library.register_fake(forward, fake_momentum_update_)


def register_per_tensor(forward) -> None:
    """``forward`` is the per-tensor (teacher, student) op."""
    torch.library.register_fake(forward, fake_momentum_update_one_)
