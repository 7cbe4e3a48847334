"""MPL's training objective on a batch: false negatives from the teacher's region features, then the
pseudo-label guided contrastive loss with the momentum teacher's pseudo-labels.

The teacher temperature enters as a tensor that scales the teacher's phrase features
(``softmax(<q~ / t, k~>) = softmax(<q~, k~> / t)``), so a schedule that changes it every step
neither recompiles a compiled step nor leaves the op's float argument stale.
"""
from __future__ import annotations

from typing import Dict, Union

import torch

from dapo_fast.ops import false_negative_mask, pseudo_label_contrastive_loss
from dapo_fast.ops.false_negative_mask import false_negative_mask_mpl_code_form
from dapo_fast.ops.pseudo_label_contrastive_loss import pseudo_label_contrastive_loss_mpl_code_form


def mpl_loss(student: Dict[str, torch.Tensor], teacher: Dict[str, torch.Tensor], fn_features: torch.Tensor,
             phrase_valid: torch.Tensor, region_valid: torch.Tensor, mode: str = "fnc", threshold: float = 0.95,
             tau: float = 1.0, teacher_tau: Union[float, torch.Tensor] = 0.1,
             code_form: bool = False) -> Dict[str, torch.Tensor]:
    """{"loss", "false_negatives"}.

    Args:
        student / teacher: {"phrase": [B, Q, D], "region": [B, K, D]} of the model and its momentum copy.
        fn_features: [B, K, C] region features the false negatives are retrieved on (no gradient).
        mode: "none" | "fne" (drop false negatives from the student softmax) | "fnc" (count them as
            pseudo-positives of the teacher), with cosine ``threshold`` (MPL: 0.85 / 0.95).
        tau: student temperature (MPL's code: 1); teacher_tau: pseudo-label temperature.
        code_form: MPL's public-code forms of the mask and the loss (same numbers, [B, B, Q, K] tensors).
    """
    fn = None
    if mode != "none":
        mask_fn = false_negative_mask_mpl_code_form if code_form else false_negative_mask
        fn = mask_fn(fn_features.detach(), region_valid, threshold)
    teacher_phrase = teacher["phrase"].detach() / teacher_tau
    args = (student["phrase"], student["region"], teacher_phrase, teacher["region"].detach(), phrase_valid,
            region_valid, fn)
    if code_form:
        loss = pseudo_label_contrastive_loss_mpl_code_form(*args, tau, 1.0, mode, "mean")
    else:
        loss = pseudo_label_contrastive_loss(*args, tau=tau, teacher_tau=1.0, mode=mode)
    with torch.no_grad():
        B = region_valid.shape[0]
        other = ~torch.eye(B, dtype=torch.bool, device=region_valid.device)[..., None]
        cross = region_valid[None].expand(B, B, -1) & other
        share = (fn & cross).sum() / cross.sum().clamp(min=1) if fn is not None else loss.new_zeros(())
    return {"loss": loss, "false_negatives": share.to(loss.dtype)}
