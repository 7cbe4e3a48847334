"""DAPO's training objective for a heatmap grounder, from image-caption pairs only.

* ``wwbl_task_loss``: WWbL-style foreground/background contrast. The heatmap M of entity n pools
  the image's per-location embedding V (unit length per location) into a foreground vector
  fg_n = sum(V*M)/sum(M).
  - foreground: InfoNCE of fg_n against every entity embedding of the (global, all ranks) batch;
    the positive is entity n's own phrase, the negatives are the other images' entities and the
    other entities of the same image (a "red circle" heatmap must not pool a "blue square"); entries
    with the same phrase text as the positive are left out (they are not negatives).
  - background: nothing of the entity may be left outside the heatmap. WWbL scores this as
    |cos(CLIP(image * (1 - M)), t)|, but pooled over locations that cosine is diluted by the image's
    area (an object left half outside the heatmap barely moves it) and the heatmap can shrink to the
    object's best location. Here it is the share of the entity's evidence left outside the heatmap,
    sum((1-M) * e) / sum(e) with e(x) = relu(cos(V(x), t_n))^bg_power, V and t detached: the
    similarity map is a target for the heatmap (as WWbL's relevancy map is), not something the
    heatmap may push down; the power keeps weak evidence (other objects of a similar colour) out.
  - area: mean(M) (keeps the heatmap tight).
  - peak (``w_peak``): the multiple-instance form of the same contrast, InfoNCE over
    max_x cos(V(x), t_m) with the image's other entities left out (they are in the image). The
    pointing game reads the heatmap's peak, and this term is what places it: the other terms alone
    reach a low loss with the peak off the object.
  WWbL uses a frozen CLIP as the embedding of the masked image; here the per-location embedding is
  learnt with the grounder (no pretrained CLIP is available offline), and the CNN's small receptive
  field keeps it local. The measurements behind these choices are in docs/training.md.
* ``diffusion_guided_loss_per_entity``: DAPO eq. 5, ``||h_k - a_k||_F^2`` per entity with the
  attention map a as a no-grad target, through the fused op ``dapo_fast.ops.diffusion_guided_loss``.
* ``self_paced_weights``: DAPO eq. 7-8 closed form ``v = clip(SREG - gamma * L, 0, 1)``.
* ``dapo_loss``: eq. 6 per entity ``mu*L_task + (1-mu)*L_D``; the v-weighted mean over the global
  batch (sum(v*L)/sum(v)), or the plain mean over valid entities without self-paced weights.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

Gather = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def wwbl_task_loss(heatmaps: torch.Tensor, pixel_embed: torch.Tensor, text_embed: torch.Tensor,
                   entity_valid: torch.Tensor, phrase_tokens: torch.Tensor, tau: float = 0.1,
                   w_fg: float = 1.0, w_bg: float = 0.3, w_area: float = 0.5, w_peak: float = 0.0,
                   bg_power: float = 3.0, peak_pool: int = 1, gather: Gather = _identity,
                   rank_offset: int = 0) -> Dict[str, torch.Tensor]:
    """Per-entity task loss [B,E] (0 for invalid entities) and its parts.

    heatmaps [B,E,h,w] in [0,1]; pixel_embed [B,D,h,w]; text_embed [B,E,D]; entity_valid [B,E] bool;
    phrase_tokens [B,E,T] (to recognise identical phrases). ``peak_pool`` > 1: the peak contrast reads
    the embedding average-pooled by that factor (its cost grows with locations x all entities of the
    batch; the peak only has to be right to within a coarse cell, the edges are the other terms'
    business). ``gather`` concatenates a tensor over the data-parallel ranks (with gradient);
    ``rank_offset`` = this rank's first row in the gathered batch.
    """
    B, E, h, w = heatmaps.shape
    eps = 1e-6
    M = heatmaps.flatten(2)  # [B,E,HW]
    # unit-length location embeddings: every location the heatmap covers contributes as much as any
    # other (as in WWbL, where the masked-out pixels are gone and the kept ones are all seen); with
    # raw features, heat on low-norm background would be free and the heatmap's peak could sit anywhere
    V = F.normalize(pixel_embed.flatten(2), dim=1)  # [B,D,HW]
    fg = F.normalize(torch.einsum("beh,bdh->bed", M, V) / (M.sum(-1, keepdim=True) + eps), dim=-1)
    t = F.normalize(text_embed, dim=-1)

    t_all = gather(t).flatten(0, 1)  # [N_all, D]
    valid_all = gather(entity_valid).flatten()
    tok_all = gather(phrase_tokens).flatten(0, 1)  # [N_all, T]
    tok_local = phrase_tokens.flatten(0, 1)
    logits = fg.flatten(0, 1) @ t_all.t() / tau  # [B*E, N_all]
    same_phrase = (tok_local[:, None, :] == tok_all[None, :, :]).all(-1)
    target = torch.arange(B * E, device=logits.device) + rank_offset * E
    is_self = torch.zeros_like(same_phrase)
    is_self[torch.arange(B * E), target] = True
    # the own column always stays, so even an invalid (padding) row has a finite loss (weighted 0 below)
    drop = ((~valid_all)[None, :] | same_phrase) & ~is_self
    logits = logits.masked_fill(drop, float("-inf"))
    fg_loss = F.cross_entropy(logits, target, reduction="none").view(B, E)
    evidence = torch.einsum("bdh,bed->beh", V, t).detach().clamp_min(0) ** bg_power  # [B,E,HW]
    bg_loss = ((1 - M) * evidence).sum(-1) / evidence.sum(-1).clamp_min(eps)  # no evidence anywhere: 0
    if w_peak:
        # peak contrast (multiple-instance form of the same contrast): the best-matching location of
        # the image for entity n must match t_n better than the image's best location for any other
        # entity's phrase matches that phrase; gradient flows through the peak, which is what the
        # pointing game reads
        Vp = V
        if peak_pool > 1:
            Vp = F.normalize(F.avg_pool2d(pixel_embed, peak_pool, ceil_mode=True).flatten(2), dim=1)
        peak = torch.einsum("bdh,nd->bnh", Vp, t_all).amax(-1) / tau  # [B, N_all]
        # the image's other entities are present in it: not negatives at the image level
        img_all = gather(torch.arange(B, device=V.device) + rank_offset).repeat_interleave(E)
        img_local = (torch.arange(B, device=V.device) + rank_offset).repeat_interleave(E)
        same_image = (img_local[:, None] == img_all[None, :]) & ~is_self
        peak = peak.repeat_interleave(E, dim=0).masked_fill(drop | same_image, float("-inf"))
        peak_loss = F.cross_entropy(peak, target, reduction="none").view(B, E)
    else:
        peak_loss = torch.zeros_like(bg_loss)
    area = M.mean(-1)
    valid = entity_valid.to(fg_loss.dtype)
    total = (w_fg * fg_loss + w_bg * bg_loss + w_area * area + w_peak * peak_loss) * valid
    return dict(loss=total, fg=fg_loss * valid, bg=bg_loss * valid, area=area * valid, peak=peak_loss * valid)


def diffusion_guided_loss_per_entity(heatmaps: torch.Tensor, attn_maps: torch.Tensor,
                                     attn_valid: torch.Tensor) -> torch.Tensor:
    """[B,E] squared Frobenius distances ||h - a||^2 (0 where there is no attention map)."""
    from dapo_fast.ops import diffusion_guided_loss

    B, E, h, w = heatmaps.shape
    # the op sums over a sample's entities; one entity per row gives the per-entity terms that the
    # self-paced weights need
    per = diffusion_guided_loss(heatmaps.reshape(B * E, 1, h, w), attn_maps.detach().reshape(B * E, 1, h, w),
                                attn_valid.reshape(B * E, 1), reduction="none").reshape(B, E)
    return per.to(heatmaps.dtype) * attn_valid.to(heatmaps.dtype)


def self_paced_weights(losses: torch.Tensor, sreg: torch.Tensor, gamma: float,
                       normaliser: Optional[torch.Tensor] = None) -> torch.Tensor:
    """DAPO eq. 8 closed form: v = clip(SREG - gamma * L, 0, 1), no gradient.

    ``normaliser`` (e.g. the batch-mean loss) divides L first so that gamma's scale does not depend
    on the loss's units; pass None for the paper's raw form."""
    L = losses.detach()
    if normaliser is not None:
        L = L / normaliser.clamp_min(1e-8)
    return (sreg - gamma * L).clamp(0.0, 1.0)


def dapo_loss(out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], *, sreg: Optional[torch.Tensor],
              gamma: float, tau: float = 0.1, w_fg: float = 1.0, w_bg: float = 0.3, w_area: float = 0.5,
              w_peak: float = 0.0, bg_power: float = 3.0, peak_pool: int = 1, gather: Gather = _identity,
              rank_offset: int = 0, world_size: int = 1,
              normalise_self_paced: bool = True) -> Dict[str, torch.Tensor]:
    """Eq. 6 + eq. 7: per entity L = mu*L_task + (1-mu)*L_D, weighted by the self-paced v when
    ``sreg`` [B,E] is given (else v = 1). Returns the scalar "loss" (scaled so that DDP's gradient
    averaging gives the gradient of the global-batch mean) and detached parts for logging."""
    valid = batch["entity_valid"]
    task = wwbl_task_loss(out["heatmaps"], out["pixel_embed"], out["text_embed"], valid, batch["phrase_tokens"],
                          tau=tau, w_fg=w_fg, w_bg=w_bg, w_area=w_area, w_peak=w_peak, bg_power=bg_power, peak_pool=peak_pool, gather=gather,
                          rank_offset=rank_offset)
    mu = batch["mu"].to(task["loss"].dtype)[:, None]
    per = task["loss"]
    ld = None
    if "attn_maps" in batch:
        ld = diffusion_guided_loss_per_entity(out["heatmaps"], batch["attn_maps"], batch["attn_valid"])
        per = mu * per + (1 - mu) * ld
    validf = valid.to(per.dtype)
    n_valid = gather(validf.detach()).sum().clamp_min(1.0)
    if sreg is not None:
        mean_loss = gather((per.detach() * validf)).sum() / n_valid
        v = self_paced_weights(per, sreg, gamma, mean_loss if normalise_self_paced else None) * validf
        # weighted mean: sum(v*L)/sum(v), so down-weighting easy/hard samples reshapes the batch
        # without also shrinking the step size
        denom = gather(v.detach()).sum().clamp_min(1e-6)
    else:
        v = validf
        denom = n_valid
    loss = (v * per).sum() / denom * world_size
    parts = {k: (task[k].detach().sum() / validf.sum().clamp_min(1.0)) for k in ("fg", "bg", "area", "peak")}
    parts["task"] = (task["loss"].detach().sum() / validf.sum().clamp_min(1.0))
    parts["v_mean"] = v.detach().sum() / validf.sum().clamp_min(1.0)
    if ld is not None:
        parts["diffusion"] = ld.detach().sum() / batch["attn_valid"].sum().clamp_min(1)
    return dict(loss=loss, **parts)
