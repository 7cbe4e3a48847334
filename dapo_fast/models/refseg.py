"""Referring segmentation from image-text pairs: TRIS's response map, PCNet's Conditional Referring
Module (CRM).

    out = model(images [B,3,S,S], expr_tokens [B,K,L], cue_tokens [B,K,N,L] or None, all_pairs=True)
    out["logits"]    [N, B, T, h*w]  tau * cos at every location of image b for text t, per stage n;
                                     all_pairs: every text of the batch (T = B*K, text t = c*K + k is
                                     the k-th text of image c), else the image's own K texts (T = K)
    out["scores"]    [N, B, T]       the image-text score TRIS's L_cls classifies: mean + max of the
                                     logits (TRIS's pooling)
    out["response"]  [N, B, K, h, w] R_n = Norm(ReLU(logits)) of each text on its own image, in
                                     [0, 1] with peak 1 (PCNet eq. 4)

Texts come K per image (referring expressions of objects in it; padded slots are the caller's to
mask). For an image V and a text, stage n (PCNet section 3.2) updates the referring embedding Q_n
with the stage's cue q_n:
  1. vision-to-text: the cue attends over the locations of the image, q^_n = q_n + MLP(attn) (eq. 2);
  2. text-to-text: Q_n attends over {q^_n, a learned null cue}, Q_{n+1} = Q_n + MLP(attn) (eq. 3);
  3. response: logits_n = tau * cos(V, m_n * Q_{n+1}) with the channel modulation
     m_n = prod_{k<=n} (1 + tanh(W_k Q_{k+1})) (FiLM) standing for the text-to-visual update; the
     next stage's cue attends over the modulated features V * m_n (eq. 4).
Every (image, text) pair is conditioned on that pair's image: the cue of a text from another image
attends over the image it is compared with. (Conditioning a text on its own image and comparing
it with every image leaks: a text that has seen its image matches that image's texture, and L_cls
is then solved without the language; docs/refseg.md.)

Two deliberate differences from the paper, so that a pair's maps depend only on its image and
text (not on the rest of the batch, which differs between training, evaluation and DDP shards)
and stay affordable for every pair of the batch:
* In step 2 the paper's keys are the text's cue and the cues of the batch's other images; here
  they are the cue and a learned null cue (attending to it = ignore the cue). The public code
  evaluates with batch size 1, where only the cue itself is left.
* In step 3 the paper's text-to-visual cross-attention lets every location attend to the
  batch's texts; here Q_{n+1} re-weights the channels in which V and Q are compared, a few
  [B, T, C] x [B, C, hw] products per stage for all pairs.
``use_cues=False`` skips steps 1-2 (Q stays the expression's embedding): one such stage is TRIS.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapo_fast.models.heatmap_grounder import build_encoders

__all__ = ["ReferringSegmenter", "ConditionalReferringModule", "build_refseg_model", "normalise_response"]

NORM_EPS = 1e-5  # Norm(x) = x / (max x + eps), as PCNet's code


def normalise_response(logits: torch.Tensor) -> torch.Tensor:
    """Norm(ReLU(x)) over the last dim: values in [0, 1], peak 1 (0 where x <= 0 everywhere)."""
    r = F.relu(logits)
    return r / (r.amax(-1, keepdim=True) + NORM_EPS)


def _mlp(dim: int) -> nn.Sequential:
    mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim))
    nn.init.zeros_(mlp[2].weight)  # a new stage starts as the identity on the embedding it updates
    nn.init.zeros_(mlp[2].bias)
    return mlp


class ConditionalReferringModule(nn.Module):
    """One stage: referring modulation of Q by the stage's cue, then the channel modulation by Q."""

    def __init__(self, dim: int, use_cues: bool = True):
        super().__init__()
        self.use_cues = use_cues
        self.scale = 1.0 / math.sqrt(dim)
        if use_cues:
            self.v2t_query, self.v2t_key, self.v2t_value = (nn.Linear(dim, dim) for _ in range(3))
            self.v2t_mlp = _mlp(dim)
            self.t2t_query, self.t2t_key, self.t2t_value = (nn.Linear(dim, dim) for _ in range(3))
            self.null_cue = nn.Parameter(torch.zeros(dim))
            self.t2t_mlp = _mlp(dim)
        self.film = nn.Linear(dim, dim)
        nn.init.zeros_(self.film.weight)  # starts as no modulation
        nn.init.zeros_(self.film.bias)

    def attend_image(self, vis: torch.Tensor, channel_scale: torch.Tensor, cue: torch.Tensor) -> torch.Tensor:
        """Eq. 2's attention of each pair's cue over the pair's image's modulated features V * s:
        softmax_p(q(cue) . key(V_p * s)) and sum_p a_p value(V_p * s), computed without forming
        V * s per pair: q . (W_k (V_p * s) + b_k) = (s * W_k^T q) . V_p + const (the constant cancels
        in the softmax), and sum_p a_p (W_v (V_p * s) + b_v) = W_v (s * sum_p a_p V_p) + b_v.

        vis [B, hw, C], channel_scale [B, T, C], cue [B, T, C] -> [B, T, C]."""
        direction = channel_scale * (self.v2t_query(cue) @ self.v2t_key.weight)           # [B, T, C]
        attn = torch.softmax(torch.bmm(direction, vis.transpose(1, 2)) * self.scale, -1)    # [B, T, hw]
        return self.v2t_value(channel_scale * torch.bmm(attn, vis))

    def forward(self, vis: torch.Tensor, channel_scale: torch.Tensor, query: torch.Tensor,
                cue: Optional[torch.Tensor]):
        """vis [B, hw, C]; per (image, text) pair: channel_scale [B, T, C] (modulation of the earlier
        stages), query [B, T, C], cue [B, T, C] -> (Q_{n+1} [B, T, C], channel_scale [B, T, C])."""
        if self.use_cues:
            cue_hat = cue + self.v2t_mlp(self.attend_image(vis, channel_scale, cue))
            null = self.null_cue.expand_as(cue_hat)
            keys = torch.stack([self.t2t_key(cue_hat), self.t2t_key(null)], -2)           # [B, T, 2, C]
            values = torch.stack([self.t2t_value(cue_hat), self.t2t_value(null)], -2)
            weights = torch.softmax((keys @ self.t2t_query(query)[..., None])[..., 0] * self.scale, -1)
            query = query + self.t2t_mlp((weights[..., None] * values).sum(-2))
        return query, channel_scale * (1 + torch.tanh(self.film(query)))


class ReferringSegmenter(nn.Module):
    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, dim: int = 64, stages: int = 3,
                 use_cues: bool = True):
        super().__init__()
        if stages < 1:
            raise ValueError(f"stages must be >= 1, got {stages}")
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.stride = image_encoder.stride
        self.use_cues = use_cues
        self.vis_proj = nn.Conv2d(dim, dim, 1)
        self.text_proj = nn.Linear(dim, dim)
        self.stages = nn.ModuleList(ConditionalReferringModule(dim, use_cues) for _ in range(stages))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # TRIS's (CLIP's) initial temperature

    def forward(self, images: torch.Tensor, expr_tokens: torch.Tensor, cue_tokens: Optional[torch.Tensor] = None,
                all_pairs: bool = True) -> Dict[str, torch.Tensor]:
        if self.use_cues and (cue_tokens is None or cue_tokens.dim() != 4 or cue_tokens.shape[2] < len(self.stages)):
            raise ValueError(f"cue_tokens must be [B, K, N, L] with N >= {len(self.stages)} stages, got "
                             f"{None if cue_tokens is None else tuple(cue_tokens.shape)}")
        feats = self.vis_proj(self.image_encoder(images))                                  # [B, C, h, w]
        b, c, h, w = feats.shape
        k = expr_tokens.shape[1]
        vis = feats.flatten(2).transpose(1, 2)                                             # [B, hw, C]
        vis_unit = F.normalize(vis, dim=-1)
        query = self.text_proj(self.text_encoder(expr_tokens))                             # [B, K, C]
        cues = self.text_proj(self.text_encoder(cue_tokens)) if self.use_cues else None    # [B, K, N, C]
        if all_pairs:  # every image against every text of the batch: [B, B*K, ...]
            query = query.reshape(1, b * k, c).expand(b, b * k, c)
            cues = None if cues is None else cues.reshape(1, b * k, *cues.shape[2:]).expand(b, b * k, *cues.shape[2:])
        channel_scale = torch.ones_like(query)
        tau = self.logit_scale.exp()
        own = torch.arange(b, device=images.device)
        logits, response = [], []
        for n, stage in enumerate(self.stages):
            query, channel_scale = stage(vis, channel_scale, query, None if cues is None else cues[:, :, n])
            text = F.normalize(channel_scale * query, dim=-1)                               # [B, T, C]
            stage_logits = tau * torch.bmm(text, vis_unit.transpose(1, 2))                  # [B, T, hw]
            logits.append(stage_logits)
            mine = stage_logits.reshape(b, b, k, h * w)[own, own] if all_pairs else stage_logits
            response.append(normalise_response(mine).reshape(b, k, h, w))
        logits = torch.stack(logits)
        scores = logits.mean(-1) + logits.amax(-1)
        return dict(logits=logits, scores=scores, response=torch.stack(response))


def build_refseg_model(cfg, vocab_size: int, stages: int, use_cues: bool) -> ReferringSegmenter:
    """The network for a ModelConfig, on the grounders' shared encoders."""
    image, text = build_encoders(cfg, vocab_size)
    return ReferringSegmenter(image, text, cfg.dim, stages, use_cues)
