"""ReIR's weakly supervised losses (eq. 12-15) on the outputs of
:class:`~dapo_fast.models.refinement_grounder.RefinementGrounder`:

    L = L_rec + lambda_1 * L_reg + lambda_3 * L_rank        (ReIR: lambda_1 = 0.1, lambda_3 = 1)

* ``L_rec``: phrase reconstruction from the coarse and the fine attended visual features;
* ``L_reg``: self-taught regression: for each phrase the most confident box is the pseudo ground
  truth, boxes with IoU >= 0.6 to it and a confidence at least 0.1 lower regress toward it
  (``self_taught_targets``, deltas of ``box_encode`` with weights (10, 10, 5, 5)), smooth-L1
  (beta 1) of the predicted offsets against those deltas, at both stages; confidences are the
  coarse softmax attention and the fused score, both in [0, 1] like the 0.1 gap assumes;
* ``L_rank``: image-caption max-margin ranking (margin 0.2, both directions, as Align2Ground):
  a caption's score on an image is the mean over its phrases of the attention-weighted cosine of the
  phrase with the image's regions.

The relation classification loss is not built (no parsed relations, see the model).
"""
from __future__ import annotations

from typing import Dict

import torch

from dapo_fast.ops import self_taught_targets, weighted_smooth_l1
from dapo_fast.ops.self_taught_targets import self_taught_targets_reir_code_form


def self_taught_loss(offsets: torch.Tensor, boxes: torch.Tensor, confidence: torch.Tensor, valid: torch.Tensor,
                     iou_threshold: float = 0.6, score_gap: float = 0.1, pseudo_box: bool = True,
                     code_form: bool = False) -> torch.Tensor:
    """Summed smooth-L1 of ``offsets`` [B, P, J, 4] against the self-taught deltas of ``boxes``
    [B, J, 4] under ``confidence`` [B, P, J]; pairs where ``valid`` [B, P, J] is False are ignored.

    ``pseudo_box``: the most confident box regresses too, toward itself (zero offset). Eq. 15 as
    written includes it (its IoU with itself is 1 > tau); ReIR's code leaves it out (the score gap
    excludes it), and then nothing teaches the regressor to leave a well-placed box alone, which is
    the box inference moves."""
    targets_fn = self_taught_targets_reir_code_form if code_form else self_taught_targets
    confidence = confidence.detach().to(boxes.dtype)
    deltas, weights = targets_fn(boxes.detach(), confidence, iou_threshold, score_gap)
    if pseudo_box:  # its deltas are already 0
        weights = weights.scatter(-1, confidence.argmax(-1, keepdim=True), 1.0)
    return weighted_smooth_l1(offsets, deltas, weights * valid.to(weights.dtype), beta=1.0, reduction="sum")


def ranking_loss(phrase_embed: torch.Tensor, region_embed: torch.Tensor, phrase_valid: torch.Tensor,
                 region_valid: torch.Tensor, scale: float, margin: float = 0.2) -> torch.Tensor:
    """Image-caption max-margin ranking over the batch (phrase/region embeddings are unit vectors)."""
    B = phrase_embed.shape[0]
    cos = torch.einsum("bed,ajd->beaj", phrase_embed, region_embed)                 # caption b, image a
    attn = (scale * cos).masked_fill(~region_valid[None, None], float("-inf")).softmax(-1)
    per_phrase = (attn * cos).sum(-1)                                             # [B, E, B]
    pv = phrase_valid.to(cos.dtype)
    score = (per_phrase * pv[..., None]).sum(1) / pv.sum(1).clamp(min=1)[:, None]  # [caption, image]
    pos = score.diagonal()
    off = ~torch.eye(B, dtype=torch.bool, device=score.device)
    wrong_image = (margin - pos[:, None] + score).clamp(min=0)
    wrong_caption = (margin - pos[None, :] + score).clamp(min=0)
    return ((wrong_image + wrong_caption) * off).sum() / max(1, B * (B - 1))


def reir_loss(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], regress: bool, scale: float,
              reg_weight: float = 0.1, rank_weight: float = 1.0, rank_margin: float = 0.2, iou_threshold: float = 0.6,
              score_gap: float = 0.1, pseudo_box: bool = True, code_form: bool = False) -> Dict[str, torch.Tensor]:
    """{"loss", "rec", "rank", "reg"} for one batch; ``regress``: the self-taught term is on;
    ``scale``: the coarse score's cosine scale (the ranking's attention)."""
    phrase_valid, box_valid = batch["entity_valid"], batch["box_valid"]
    B, E = phrase_valid.shape
    rec = out["rec"]
    rank = ranking_loss(out["coarse_q"], out["coarse_o"], phrase_valid, box_valid, scale, rank_margin)
    loss = rec + rank_weight * rank
    reg = loss.new_zeros(())
    if regress:
        n_phrases = phrase_valid.sum().clamp(min=1)
        valid = phrase_valid[:, :, None] & box_valid[:, None]
        reg = self_taught_loss(out["coarse_offsets"], batch["boxes"], out["coarse_attn"], valid, iou_threshold,
                               score_gap, pseudo_box, code_form)
        if "fused" in out:
            K = out["fused"].shape[-1]
            reg = reg + self_taught_loss(out["fine_offsets"].reshape(B * E, 1, K, 4),
                                         out["refined"].reshape(B * E, K, 4), out["fused"].reshape(B * E, 1, K),
                                         phrase_valid.reshape(B * E, 1, 1).expand(B * E, 1, K), iou_threshold,
                                         score_gap, pseudo_box, code_form)
        reg = reg / n_phrases
        loss = loss + reg_weight * reg
    return {"loss": loss, "rec": rec.detach(), "rank": rank.detach(), "reg": reg.detach()}
