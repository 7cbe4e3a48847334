"""DAPO's attention-driven latent update (eq. 4): z_t <- z_t - alpha_t * grad_{z_t} L_A.

L_A (eq. 3) compares the grounder's heatmaps on the decoded latents (constants: DAPO passes no
gradient between SD and the grounder) with the fused per-entity cross-attention maps, which
are differentiable in z_t through the UNet. Attend-and-Excite's step-size schedule and
iterative-refinement thresholds are the defaults (:class:`AttendExciteSchedule`).
"""
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from dapo_fast.diffusion.attention_maps import AttentionMapStore, register, unregister
from dapo_fast.diffusion.token_maps import entity_attention_maps
from dapo_fast.ops import attention_guidance_loss

__all__ = ["AttendExciteSchedule", "GuidedStep", "attention_guided_step", "decode_latents"]


@dataclass
class AttendExciteSchedule:
    """alpha_i = scale_factor * sqrt(linspace(1.0, 0.5, num_inference_steps)[i]) for the first
    ``max_iter_to_alter`` steps; at the steps in ``thresholds`` the update is repeated (up to
    ``max_refinement_steps`` times) until the loss reaches the threshold."""

    num_inference_steps: int = 50
    scale_factor: float = 20.0
    scale_range: tuple = (1.0, 0.5)
    max_iter_to_alter: int = 25
    thresholds: Dict[int, float] = field(default_factory=lambda: {0: 0.05, 10: 0.5, 20: 0.8})
    max_refinement_steps: int = 20

    def step_size(self, index: int) -> float:
        n = self.num_inference_steps
        start, end = self.scale_range
        value = start + (end - start) * (index / (n - 1) if n > 1 else 0.0)
        return self.scale_factor * math.sqrt(value)

    def applies(self, index: int) -> bool:
        return index < self.max_iter_to_alter

    def threshold(self, index: int) -> Optional[float]:
        return self.thresholds.get(index)


class GuidedStep(NamedTuple):
    latents: Tensor      # updated z_t (detached)
    loss: Tensor         # [B] L_A at the latents the last update started from
    iterations: int      # updates made (1 + refinement iterations)
    step_size: float     # alpha_t used


def decode_latents(vae, latents: Tensor) -> Tensor:
    """Images in [-1, 1] from SD latents (divided by the VAE's scaling factor first)."""
    scaling = getattr(getattr(vae, "config", None), "scaling_factor", 1.0)
    return vae.decode(latents / scaling).sample


def _loss_and_grad(unet, latents, t, prompt_embeds, grounder, vae, sample_spans, store, resolution, last_indices,
                   token_map_kwargs):
    z = latents.detach().requires_grad_(True)
    with torch.no_grad():
        heatmaps = grounder(decode_latents(vae, z.detach()))
    with torch.enable_grad():
        store.reset()
        unet(z, t, encoder_hidden_states=prompt_embeds)
        maps, valid = entity_attention_maps(store.maps(resolution), sample_spans, last_indices, **token_map_kwargs)
        if heatmaps.dim() != 4 or heatmaps.shape[:2] != maps.shape[:2]:
            raise ValueError(f"the grounder must return heatmaps [B, E, h, w] = [{maps.shape[0]}, {maps.shape[1]}, "
                             f"h, w] (E = most entities of a prompt), got {tuple(heatmaps.shape)}")
        if heatmaps.shape[-2:] != maps.shape[-2:]:
            heatmaps = F.interpolate(heatmaps.float(), size=maps.shape[-2:], mode="bilinear", align_corners=False)
        loss = attention_guidance_loss(heatmaps.to(maps.dtype), maps, valid)
        (grad,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), grad


def attention_guided_step(unet, latents: Tensor, t, prompt_embeds: Tensor, grounder: Callable[[Tensor], Tensor],
                          vae, entity_spans: Sequence[Sequence[Sequence[int]]], step_size: Optional[float] = None, *,
                          step_index: int = 0, schedule: Optional[AttendExciteSchedule] = None,
                          refine: bool = False, refine_threshold: Optional[float] = None,
                          max_refinement_steps: Optional[int] = None, store: Optional[AttentionMapStore] = None,
                          resolution: int = 16, last_index: Union[int, Sequence[int]] = -1,
                          token_map_kwargs: Optional[dict] = None) -> GuidedStep:
    """One DAPO eq. 4 update of ``latents`` [B, C, h, w] at timestep ``t``.

    Args:
        unet: a diffusers UNet2DConditionModel. If ``store`` is None the fused processors are
            registered for the call and removed afterwards; otherwise ``store`` must be the one
            registered on ``unet`` (:func:`dapo_fast.diffusion.register`).
        prompt_embeds: [B, T, D] conditional text embeddings (no classifier-free-guidance half).
        grounder: images [B, 3, H, W] in [-1, 1] -> heatmaps [B, E, h, w] (entities in the
            order of ``entity_spans``, E = the most entities of a prompt); called without gradient.
        vae: the AutoencoderKL decoding the latents for the grounder.
        entity_spans: per sample, its entities' token spans (:func:`entity_token_spans`); a
            prompt with fewer entities than E leaves the rest out of its pairs.
        step_size: alpha_t; None takes ``schedule.step_size(step_index)`` (Attend-and-Excite's
            20 * sqrt(linspace(1, 0.5, 50)[i]) by default).
        step_index: denoising step index i (for the schedule's defaults).
        schedule: :class:`AttendExciteSchedule` (default: Attend-and-Excite's numbers).
        refine, refine_threshold, max_refinement_steps: iterative refinement: repeat the update
            while any sample's L_A exceeds the threshold, at most ``max_refinement_steps`` extra
            times. ``refine=True`` without a threshold takes ``schedule.threshold(step_index)``
            (A&E's {0: 0.05, 10: 0.5, 20: 0.8}; no refinement at other steps); an explicit
            ``refine_threshold`` always refines. Note A&E's thresholds were set for its own loss
            (1 - max attention); L_A has another scale, so pass a threshold tuned for it.
        last_index: the EOT position of each prompt (one int for all, or one per sample).
        token_map_kwargs: extra arguments of :func:`token_attention_maps` (scale, smooth, ...).

    Returns:
        GuidedStep(latents, loss, iterations, step_size).
    """
    token_map_kwargs = dict(token_map_kwargs or {})
    schedule = schedule or AttendExciteSchedule()
    if step_size is None:
        step_size = schedule.step_size(step_index)
    if refine and refine_threshold is None:
        refine_threshold = schedule.threshold(step_index)
    if max_refinement_steps is None:
        max_refinement_steps = schedule.max_refinement_steps
    own = store is None
    if own:
        store = AttentionMapStore((resolution,))
        register(unet, store)
    saved_cfg = store.classifier_free_guidance
    store.classifier_free_guidance = False
    try:
        args = (t, prompt_embeds, grounder, vae, entity_spans, store, resolution, last_index, token_map_kwargs)
        loss, grad = _loss_and_grad(unet, latents, *args)
        latents = latents.detach() - step_size * grad
        iterations = 1
        if refine_threshold is not None:
            while iterations <= max_refinement_steps:
                loss_now, grad = _loss_and_grad(unet, latents, *args)
                if bool((loss_now <= refine_threshold).all()):
                    loss = loss_now
                    break
                loss = loss_now
                latents = latents - step_size * grad
                iterations += 1
        return GuidedStep(latents.detach(), loss, iterations, float(step_size))
    finally:
        store.classifier_free_guidance = saved_cfg
        if own:
            unregister(unet)
