"""Weakly supervised referring segmentation losses: TRIS's L_cls and PCNet's RaS and IaD, on the ops.

    classification_loss       L_cls (TRIS; PCNet appendix A.2): every image against every text of the
                              batch, BCE of the pooled response logit y[i, t] against "t is one of
                              image i's own texts" (its other images' texts are the negatives)
    ras_loss                  eq. 7 from per-stage ambiguities: 1/(N-1) sum_n max(0, S[n+1] - S[n])
    region_shrinking_loss     RaS from response maps and mask proposals (form "paper" or "code")
    iad_loss                  eq. 8-9 from alignment scores (form "paper" or "code")
    instance_disambiguation_loss  IaD from response maps (alignment by proposal_alignment)

Response maps enter RaS and IaD at the proposals' resolution with values in [0, 1] (PCNet's
R = Norm(ReLU(.))). The proposals are class-agnostic (a segmenter's masks): no ground truth.

The public code's forms (``form="code"``) differ from the paper's equations; as read from the
authors' repository, they compute:

* RaS: the foreground is the proposal with the highest *external* score (the code ranks proposals
  by a precomputed CLIP score of proposal and expression; ``fg_scores`` here), the same for every
  stage. Per stage n, with the soft IoU ``I / (sum r + sum m + eps)`` (half the Dice, eps 2e-5):
  fg_n = IoU(r_n, m_fg), bg_n = max over the *individual* other proposals of IoU(r_n, m_p) (not
  their union). Each is averaged over the maps where the code deems it informative, as
  sum(v * keep) / (sum(keep) + 1e-4): fg over the maps whose positive part (r > 1e-9) touches m_fg,
  bg over the maps whose positive part has a hard IoU < 1 with every background proposal (always
  true, as the half-Dice never exceeds 1/2; kept for fidelity). The loss is
  shrink + anchor with shrink = 1 - (bg_k - bg_{k+1}) and anchor = mean_n (1 - fg_n). The code
  draws one random consecutive stage pair k per step; here shrink is the mean over all pairs (the
  expectation of that draw, so a run stays a function of its seed); the code weighs shrink and
  anchor with two separate command-line weights, here they are added.
* IaD: y = sg(onehot(argmax S) - softmax(S)) + softmax(S) (the gradient flows through a softmax
  of the scores, not the scores), and L = 1 - sum_pairs ||y_a - y_d||_1 / (2 * pairs + 1e-4): the
  L1 distance halved, so L is 0 for two different proposals and 1 for the same one (the paper's
  1 - ||y_a - y_d||^2 gives -1 and 1). In both forms two texts that pick the same proposal get no
  gradient (y_a - y_d = 0): IaD pushes apart what is already apart, it does not break a tie.
Proposals marked invalid are left out of both forms (the code pads to 40 with empty masks, which
then take part in its softmax with score 0).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from dapo_fast.ops import proposal_alignment, region_ambiguity, soft_iou

__all__ = ["FORMS", "classification_loss", "ras_loss", "region_shrinking_loss", "straight_through_onehot",
           "iad_loss", "instance_disambiguation_loss"]

FORMS = ("paper", "code")
CODE_EPS = 2e-5  # the code's soft IoU: I / ((A + B + 1e-5) + 1e-5)
_KEEP_EPS = 1e-4  # the code's guard in its masked batch means
_POSITIVE = 1e-9  # the code's "activated pixel" threshold


def _form(form: str) -> str:
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    return form


def classification_loss(logits: Tensor, labels: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """TRIS's L_cls: mean BCE-with-logits of ``logits`` [..., I, T] (image i, text t) against
    ``labels`` [I, T] (1 where t is one of image i's texts); ``valid`` [T] drops padded texts.
    Leading dims (stages) are averaged, as PCNet applies L_cls to every stage independently."""
    if logits.shape[-2:] != labels.shape:
        raise ValueError(f"logits [..., I, T] and labels [I, T] must agree, got {tuple(logits.shape)} "
                         f"and {tuple(labels.shape)}")
    target = labels.to(logits.dtype).expand_as(logits)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if valid is None:
        return loss.mean()
    weight = valid.to(logits.dtype).expand_as(loss)
    return (loss * weight).sum() / weight.sum().clamp_min(1)


def ras_loss(ambiguity: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """Eq. 7. ambiguity: Tensor[M, N] per map and stage (N >= 1, stage order); weight: Tensor[M]
    (None: 1). The weighted mean over maps; 0 when N == 1."""
    if ambiguity.dim() != 2:
        raise ValueError(f"ambiguity must have shape [M, N] (N stages), got {tuple(ambiguity.shape)}")
    if ambiguity.shape[1] < 2:
        return ambiguity.sum() * 0
    per_map = F.relu(ambiguity[:, 1:] - ambiguity[:, :-1]).mean(1)
    if weight is None:
        return per_map.mean()
    weight = weight.to(per_map.dtype)
    return (per_map * weight).sum() / weight.sum().clamp_min(1)


def _maps_per_image(response: Tensor, name: str) -> Tensor:
    """[B, N, H, W] -> [B, 1, N, H, W]; [B, K, N, H, W] stays."""
    if response.dim() == 4:
        return response[:, None]
    if response.dim() != 5:
        raise ValueError(f"{name} must be [B, N, H, W] or [B, K, N, H, W] (K maps of N stages per image), "
                         f"got {tuple(response.shape)}")
    return response


def _masked_mean(values: Tensor, keep: Tensor) -> Tensor:
    """The code's batch mean over kept entries: sum(v * keep) / (sum(keep) + 1e-4), per column."""
    keep = keep.to(values.dtype)
    return (values * keep).sum(0) / (keep.sum(0) + _KEEP_EPS)


def _code_region_shrinking(response: Tensor, masks: Tensor, mask_valid: Tensor, fg_scores: Tensor,
                           weight: Tensor, backend: str) -> Tensor:
    b, k, n = response.shape[:3]
    p = masks.shape[1]
    if p == 0:
        raise ValueError("the code form of RaS needs at least one mask proposal per image")
    valid = mask_valid[:, None, :]                                                      # [B, 1, P]
    fg = fg_scores.detach().masked_fill(~valid, float("-inf")).argmax(-1)              # [B, K]
    is_fg = F.one_hot(fg, p).to(torch.bool)                                            # [B, K, P]
    fg_ok = (is_fg & valid).any(-1) & (weight > 0)                                     # [B, K]
    bg_mask = (valid & ~is_fg)[:, :, None, :]                                          # [B, K, 1, P]
    flat = response.flatten(1, 2)
    iou = soft_iou(flat, masks, "half_dice", CODE_EPS, backend=backend).reshape(b, k, n, p)
    with torch.no_grad():
        hard = soft_iou((flat > _POSITIVE).to(flat.dtype), masks, "half_dice", CODE_EPS,
                        backend=backend).reshape(b, k, n, p)
    fg_index = fg[:, :, None, None].expand(b, k, n, 1)
    fg_iou = iou.gather(3, fg_index)[..., 0]                                           # [B, K, N]
    fg_keep = (hard.gather(3, fg_index)[..., 0] > 0) & fg_ok[:, :, None]
    floor = torch.zeros((), dtype=iou.dtype, device=iou.device)
    bg_iou = torch.where(bg_mask, iou, floor).amax(3)                                  # 0 with no background
    bg_keep = (torch.where(bg_mask, hard, floor).amax(3) < 1) & (weight > 0)[:, :, None]
    fg_stage = _masked_mean(fg_iou.flatten(0, 1), fg_keep.flatten(0, 1))               # [N]
    bg_stage = _masked_mean(bg_iou.flatten(0, 1), bg_keep.flatten(0, 1))
    anchor = (1 - fg_stage).mean()
    if n < 2:
        return anchor
    shrink = (1 - (bg_stage[:-1] - bg_stage[1:])).mean()
    return shrink + anchor


def region_shrinking_loss(response: Tensor, masks: Tensor, mask_valid: Optional[Tensor] = None, *,
                          weight: Optional[Tensor] = None, form: str = "paper", variant: Optional[str] = None,
                          fg_scores: Optional[Tensor] = None, backend: str = "auto") -> Tensor:
    """RaS over the N stages of each response map.

    Args:
        response: Tensor[B, N, H, W] or Tensor[B, K, N, H, W] (K maps per image, e.g. its texts)
            in [0, 1], stage order.
        masks: Tensor[B, P, H, W] the images' mask proposals; mask_valid: Tensor[B, P] bool (None: all).
        weight: Tensor[B] or Tensor[B, K] (0 drops a map, e.g. a padded text; None: all 1).
        form: "paper" (eq. 6-7 with region_ambiguity: foreground = best-aligned proposal of each
            stage, background = union of the others, soft IoU ``variant``, default "iou") or
            "code" (the public code's form, module docstring; needs ``fg_scores`` [B, (K,) P]).
        backend: passed to the ops.

    Returns:
        scalar.
    """
    form = _form(form)
    maps = _maps_per_image(response, "response")
    b, k, n = maps.shape[:3]
    w = torch.ones(b, k, dtype=maps.dtype, device=maps.device) if weight is None else weight.reshape(b, k).to(maps.dtype)
    if form == "paper":
        ambiguity, _ = region_ambiguity(maps.flatten(1, 2), masks, mask_valid, variant or "iou", backend=backend)
        return ras_loss(ambiguity.reshape(b * k, n), w.flatten())
    if variant not in (None, "half_dice"):
        raise ValueError(f"the code form of RaS uses the half-Dice soft IoU; variant must be None or "
                         f"'half_dice', got {variant!r}")
    p = masks.shape[1]
    if fg_scores is None or fg_scores.numel() != b * k * p:
        raise ValueError(f"the code form of RaS needs fg_scores of shape [B, (K,) P] = {(b, k, p)}, got "
                         f"{None if fg_scores is None else tuple(fg_scores.shape)}")
    valid = torch.ones(b, p, dtype=torch.bool, device=masks.device) if mask_valid is None else mask_valid
    return _code_region_shrinking(maps, masks, valid, fg_scores.reshape(b, k, p), w, backend)


def straight_through_onehot(scores: Tensor, mask_valid: Optional[Tensor] = None, form: str = "paper") -> Tensor:
    """Eq. 8 over the last dim: value onehot(argmax S) (valid entries only, lowest index on ties),
    gradient the identity to S ("paper") or through softmax(S) ("code").

    The paper's form is evaluated as onehot + (S - sg(S)), the code's as the code does,
    sg(onehot - softmax(S)) + softmax(S); both values are then the one-hot (the code's up to
    rounding, which |y_a - y_d| would turn into a +-1 gradient: in practice the rounding cancels)."""
    form = _form(form)
    valid = torch.ones_like(scores, dtype=torch.bool) if mask_valid is None else mask_valid.expand_as(scores)
    onehot = F.one_hot(scores.masked_fill(~valid, float("-inf")).argmax(dim=-1), scores.shape[-1]).to(scores.dtype)
    if form == "paper":
        return onehot + (scores - scores.detach())
    # a finite fill keeps a row without valid entries finite (uniform) instead of NaN
    soft = torch.softmax(scores.masked_fill(~valid, torch.finfo(scores.dtype).min), -1)
    return (onehot - soft).detach() + soft


def iad_loss(scores_anchor: Tensor, scores_others: Tensor, mask_valid: Optional[Tensor] = None,
             pair_valid: Optional[Tensor] = None, form: str = "paper") -> Tensor:
    """Eq. 9 (``form="paper"``) or the public code's form (module docstring).

    Args:
        scores_anchor: Tensor[M, P] alignment scores of the anchor texts' maps.
        scores_others: Tensor[M, N_d, P] scores of N_d other texts (other objects of the same image).
        mask_valid: Tensor[M, P] bool (None: all valid).
        pair_valid: Tensor[M, N_d] bool: which (anchor, other) pairs exist (None: all).

    Returns:
        scalar: paper: mean over valid pairs of 1 - ||y_a - y_d||^2 (0 with no pair);
        code: 1 - sum over valid pairs of ||y_a - y_d||_1 / (2 * pairs + 1e-4).
    """
    if scores_anchor.dim() != 2 or scores_others.dim() != 3 or scores_others.shape[0] != scores_anchor.shape[0] \
            or scores_others.shape[2] != scores_anchor.shape[1]:
        raise ValueError(f"scores_anchor must be [M, P] and scores_others [M, N_d, P], got "
                         f"{tuple(scores_anchor.shape)} and {tuple(scores_others.shape)}")
    if pair_valid is not None and tuple(pair_valid.shape) != tuple(scores_others.shape[:2]):
        raise ValueError(f"pair_valid must have shape [M, N_d] = {tuple(scores_others.shape[:2])}, "
                         f"got {tuple(pair_valid.shape)}")
    form = _form(form)
    y_a = straight_through_onehot(scores_anchor, mask_valid, form)
    y_d = straight_through_onehot(scores_others, None if mask_valid is None else mask_valid[:, None, :], form)
    diff = y_a[:, None, :] - y_d                                                       # [M, N_d, P]
    weight = (torch.ones(scores_others.shape[:2], dtype=scores_anchor.dtype, device=scores_anchor.device)
              if pair_valid is None else pair_valid.to(scores_anchor.dtype))
    if form == "paper":
        return ((1 - diff.pow(2).sum(-1)) * weight).sum() / weight.sum().clamp_min(1)
    return 1 - (diff.abs().sum(-1) * weight).sum() / (2 * weight.sum() + _KEEP_EPS)


def instance_disambiguation_loss(response: Tensor, partners: Tensor, masks: Tensor,
                                 mask_valid: Optional[Tensor] = None, *, form: str = "paper",
                                 backend: str = "auto") -> Tuple[Tensor, Tensor]:
    """IaD between the maps of different texts of the same image, at every stage.

    Args:
        response: Tensor[B, K, N, H, W]: the maps of K texts of each image (N stages).
        partners: Tensor[B, K, N_d] int64: for each text, the N_d other texts of its image (indices
            into K) whose target is a different object; -1 for none (a padded slot).
        masks, mask_valid: the images' proposals [B, P, H, W], [B, P].

    Returns:
        (loss scalar, alignment scores Tensor[B, K, N, P]). Paper form: mean over every valid
        (text, other, stage); code form: the code's per-stage batch mean, averaged over stages.
    """
    form = _form(form)
    if response.dim() != 5:
        raise ValueError(f"response must be [B, K, N, H, W], got {tuple(response.shape)}")
    b, k, n = response.shape[:3]
    if partners.dim() != 3 or tuple(partners.shape[:2]) != (b, k):
        raise ValueError(f"partners must be [B, K, N_d] with [B, K] = {(b, k)}, got {tuple(partners.shape)}")
    nd = partners.shape[2]
    scores = proposal_alignment(response.flatten(1, 2), masks, mask_valid, backend=backend).reshape(b, k, n, -1)
    p = scores.shape[-1]
    pair_valid = partners >= 0                                                         # [B, K, N_d]
    index = partners.clamp_min(0)[:, :, :, None, None].expand(b, k, nd, n, p)
    others = scores[:, None].expand(b, k, k, n, p).gather(2, index)                    # [B, K, N_d, N, P]
    anchor = scores.permute(2, 0, 1, 3).reshape(n, b * k, p)                           # per stage
    others = others.permute(3, 0, 1, 2, 4).reshape(n, b * k, nd, p)
    pairs = pair_valid.reshape(b * k, nd)
    valid = None if mask_valid is None else mask_valid[:, None, :].expand(b, k, p).reshape(b * k, p)
    if form == "paper":  # eq. 9 averages over the pairs of every stage at once
        loss = iad_loss(anchor.reshape(n * b * k, p), others.reshape(n * b * k, nd, p),
                        None if valid is None else valid.repeat(n, 1), pairs.repeat(n, 1), form)
    else:  # the code takes its batch mean per stage, then the mean over the stages
        loss = torch.stack([iad_loss(anchor[s], others[s], valid, pairs, form) for s in range(n)]).mean()
    return loss, scores
