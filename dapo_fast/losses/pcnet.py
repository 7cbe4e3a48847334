"""PCNet's losses (pcnet.txt, eq. 7-9) in plain PyTorch on top of the ops.

    ras_loss  Region-aware Shrinking: 1/(N-1) * sum_n max(0, S_amb[n+1] - S_amb[n]) over the N stages,
              averaged over the batch. S_amb comes from dapo_fast.ops.region_ambiguity.
    iad_loss  Instance-aware Disambiguation: y = onehot(argmax S) + S - sg(S) (straight-through),
              L = 1/N_d * sum_d (1 - ||y_a - y_d||^2), averaged over the batch. S are alignment
              scores from dapo_fast.ops.proposal_alignment.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from dapo_fast.ops import proposal_alignment, region_ambiguity

__all__ = ["ras_loss", "iad_loss", "straight_through_onehot", "pcnet_losses"]


def ras_loss(ambiguity: Tensor) -> Tensor:
    """ambiguity: Tensor[B, N] per stage (N >= 1, stage order). Returns a scalar (0 when N == 1)."""
    if ambiguity.dim() != 2:
        raise ValueError(f"ambiguity must have shape [B, N] (N stages), got {tuple(ambiguity.shape)}")
    if ambiguity.shape[1] < 2:
        return ambiguity.sum() * 0
    return F.relu(ambiguity[:, 1:] - ambiguity[:, :-1]).mean()


def straight_through_onehot(scores: Tensor, mask_valid: Optional[Tensor] = None) -> Tensor:
    """onehot(argmax S) + S - sg(S) over the last dim (eq. 8); argmax over valid entries only,
    lowest index on ties. Forward value: the one-hot; gradient: identity to the scores."""
    masked = scores if mask_valid is None else scores.masked_fill(~mask_valid, float("-inf"))
    onehot = F.one_hot(masked.argmax(dim=-1), scores.shape[-1]).to(scores.dtype)
    return onehot + scores - scores.detach()


def iad_loss(scores_anchor: Tensor, scores_others: Tensor, mask_valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 9.

    Args:
        scores_anchor: Tensor[B, P] alignment scores of the anchor text's map.
        scores_others: Tensor[B, N_d, P] scores of N_d other texts (other objects of the same image).
        mask_valid: Tensor[B, P] bool (None: all valid).

    Returns:
        scalar: mean over B and N_d of 1 - ||y_a - y_d||^2.
    """
    if scores_anchor.dim() != 2 or scores_others.dim() != 3 or scores_others.shape[0] != scores_anchor.shape[0] \
            or scores_others.shape[2] != scores_anchor.shape[1]:
        raise ValueError(f"scores_anchor must be [B, P] and scores_others [B, N_d, P], got "
                         f"{tuple(scores_anchor.shape)} and {tuple(scores_others.shape)}")
    y_a = straight_through_onehot(scores_anchor, mask_valid)
    y_d = straight_through_onehot(scores_others, None if mask_valid is None else mask_valid[:, None, :])
    return (1 - (y_a[:, None, :] - y_d).pow(2).sum(-1)).mean()


def pcnet_losses(response: Tensor, masks: Tensor, mask_valid: Optional[Tensor] = None, variant: str = "iou",
                 response_others: Optional[Tensor] = None):
    """(L_RaS, L_IaD) of one PCNet step.

    Args:
        response: Tensor[B, N, H, W] response maps of the N stages of the anchor text.
        masks, mask_valid: the image's proposals [B, P, H, W], [B, P].
        response_others: Tensor[B, N, N_d, H, W] maps of N_d other texts per stage (None: no IaD, returns 0).
    """
    ambiguity, _ = region_ambiguity(response, masks, mask_valid, variant)
    ras = ras_loss(ambiguity)
    if response_others is None:
        return ras, ras.new_zeros(())
    b, n, nd = response_others.shape[:3]
    anchor = proposal_alignment(response, masks, mask_valid)                         # [B, N, P]
    others = proposal_alignment(response_others.flatten(1, 2), masks, mask_valid)    # [B, N*N_d, P]
    others = others.reshape(b, n, nd, -1).transpose(1, 2)                           # [B, N_d, N, P]
    valid = None if mask_valid is None else mask_valid[:, None, :].expand(b, n, -1).reshape(b * n, -1)
    iad = iad_loss(anchor.reshape(b * n, -1), others.transpose(1, 2).reshape(b * n, nd, -1), valid)
    return ras, iad
