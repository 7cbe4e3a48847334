"""DAPO's diffusion-guided loss (eq. 5) in plain PyTorch before the batch reduction: the
specification. Computed in float32 for half/bfloat16 inputs."""
import torch

from dapo_fast.ops._reference import compute_dtype


def diffusion_guided_loss(heatmaps: torch.Tensor, targets: torch.Tensor, entity_valid: torch.Tensor) -> torch.Tensor:
    """[B]: sum over valid entities k of ||h_k - a_k||_F^2 (targets are constants)."""
    compute = compute_dtype(heatmaps.dtype)
    diff = heatmaps.to(compute) - targets.to(compute)
    per_entity = (diff ** 2).flatten(2).sum(-1) * entity_valid.to(compute)
    return per_entity.sum(-1).to(heatmaps.dtype)
