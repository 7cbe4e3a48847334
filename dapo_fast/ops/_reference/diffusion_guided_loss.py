"""DAPO's diffusion-guided loss (eq. 5) in plain PyTorch before the batch reduction: the
specification. Computed in float32 for half/bfloat16 inputs."""
import torch

from dapo_fast.ops._reference import compute_dtype


def diffusion_guided_loss(heatmaps: torch.Tensor, targets: torch.Tensor, entity_valid: torch.Tensor) -> torch.Tensor:
    """[B]: sum over valid entities k of ||h_k - a_k||_F^2 (targets are constants). The maps of
    invalid entities take no part (a NaN there does not reach the loss)."""
    compute = compute_dtype(heatmaps.dtype)
    diff = heatmaps.to(compute) - targets.to(compute)
    diff = torch.where(entity_valid[:, :, None, None], diff, torch.zeros((), dtype=compute, device=diff.device))
    return (diff ** 2).flatten(1).sum(-1).to(heatmaps.dtype)
