"""Head-mean cross-attention probabilities in plain PyTorch: the specification, differentiable.

It materialises softmax(q k^T * scale + key_bias) of every head, [B, heads, HW, T], which is
exactly what the fused kernels avoid. Computed in float32 for half/bfloat16 inputs.
"""
from typing import Optional

import torch

from dapo_fast.ops._reference import compute_dtype


def cross_attention_probs_mean(q: torch.Tensor, k: torch.Tensor, scale: float,
                               key_bias: Optional[torch.Tensor] = None, weight: float = 1.0) -> torch.Tensor:
    compute = compute_dtype(q.dtype)
    scores = torch.matmul(q.to(compute), k.to(compute).transpose(-1, -2)) * scale
    if key_bias is not None:
        scores = scores + key_bias.to(compute)[:, None, None, :]
    return (scores.softmax(dim=-1).mean(dim=1) * weight).to(q.dtype)
