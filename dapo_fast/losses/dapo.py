"""DAPO's losses (dapo.txt eq. 3, 5, 6).

L_A (eq. 3) and L_D (eq. 5) are the fused ops of dapo_fast.ops; eq. 6 mixes the grounder's task
loss on real images with L_D on generated ones.
"""
from typing import Optional

import torch
from torch import Tensor

from dapo_fast.ops import attention_guidance_loss, diffusion_guided_loss

__all__ = ["attention_guidance_loss", "diffusion_guided_loss", "dapo_grounding_loss"]


def dapo_grounding_loss(task_loss: Tensor, heatmaps: Tensor, attn_targets: Tensor, is_real: Tensor,
                        entity_valid: Optional[Tensor] = None) -> Tensor:
    """eq. 6 over a batch: mean_n [mu_n L_task,n + (1 - mu_n) L_D,n], mu_n = 1 for a real image,
    0 for a generated one (whose attention maps ``attn_targets`` supervise the heatmaps).

    Args:
        task_loss: Tensor[B] per-sample task loss of the grounder (e.g. WWbL's loss).
        heatmaps: Tensor[B, E, H, W] grounder heatmaps.
        attn_targets: Tensor[B, E, H, W] final-step attention maps (ignored where is_real).
        is_real: bool Tensor[B].
        entity_valid: bool Tensor[B, E] (default: all valid).
    """
    if task_loss.dim() != 1 or task_loss.shape[0] != heatmaps.shape[0]:
        raise ValueError(f"task_loss must have shape [B] = [{heatmaps.shape[0]}], got {tuple(task_loss.shape)}")
    if is_real.dtype != torch.bool or is_real.shape != task_loss.shape:
        raise ValueError(f"is_real must be a bool tensor of shape [B], got {is_real.dtype} {tuple(is_real.shape)}")
    guided = diffusion_guided_loss(heatmaps, attn_targets.detach(), entity_valid, reduction="none")
    mu = is_real.to(task_loss.dtype)
    return (mu * task_loss + (1 - mu) * guided.to(task_loss.dtype)).mean()
