"""DAPO's attention-guidance loss (eq. 3) in plain PyTorch, written as the paper writes it: the
literal pairwise double sum over ordered pairs of valid entities (O(E^2 H W)), the specification.
Computed in float32 for half/bfloat16 inputs.
"""
import torch

from dapo_fast.ops._reference import compute_dtype


def attention_guidance_loss(heatmaps: torch.Tensor, attn: torch.Tensor, entity_valid: torch.Tensor) -> torch.Tensor:
    """[B]: 1/|P| sum_{(i, j) in P} (||h_i - a_i||_F^2 - ||a_i - a_j||_F^2), P = ordered pairs
    of distinct valid entities; 0 when a sample has fewer than two valid entities."""
    compute = compute_dtype(heatmaps.dtype)
    h, a = heatmaps.to(compute), attn.to(compute)
    batch, entities = h.shape[0], h.shape[1]
    losses = []
    for b in range(batch):
        total = (h[b].sum() + a[b].sum()) * 0  # keeps the graph (zero gradient) without pairs
        pairs = 0
        for i in range(entities):
            for j in range(entities):
                if i == j or not bool(entity_valid[b, i]) or not bool(entity_valid[b, j]):
                    continue
                total = total + ((h[b, i] - a[b, i]) ** 2).sum() - ((a[b, i] - a[b, j]) ** 2).sum()
                pairs += 1
        losses.append(total / pairs if pairs > 0 else total)
    if batch == 0:
        return (h.sum((1, 2, 3)) + a.sum((1, 2, 3))).to(heatmaps.dtype)
    return torch.stack(losses).to(heatmaps.dtype)


def attention_guidance_loss_pairwise_vectorised(heatmaps: torch.Tensor, attn: torch.Tensor,
                                                entity_valid: torch.Tensor) -> torch.Tensor:
    """The same pairwise definition without Python loops ([B, E, E] pair matrix of squared
    distances): the form torch.compile can fuse, used as the compiled baseline."""
    compute = compute_dtype(heatmaps.dtype)
    h, a = heatmaps.to(compute), attn.to(compute)
    valid = entity_valid.to(compute)
    pair = valid[:, :, None] * valid[:, None, :] * (1 - torch.eye(h.shape[1], dtype=compute, device=h.device))
    fit = ((h - a) ** 2).flatten(2).sum(-1)                                   # [B, E]
    dist = ((a[:, :, None] - a[:, None, :]) ** 2).flatten(3).sum(-1)         # [B, E, E]
    total = (pair * (fit[:, :, None] - dist)).sum((1, 2))
    count = pair.sum((1, 2))
    return torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total)).to(heatmaps.dtype)
