"""ReIR's coarse-to-fine network (Liu et al., ICCV 2021), on the shared proposal encoders.

Coarse matching scores every phrase-proposal pair and predicts regression offsets for it (eq. 2);
the top K proposals of each phrase (K = 5) are moved by their offsets, RoIAlign pools the refined
boxes again, and fine matching scores them and predicts a second offset (eq. 9, 10). The fused
score of a refined box is ``s = s_coarse * s_fine`` (eq. 11), the grounding result the best
refined box moved by its fine offset.

Scores: ``F_cls(x_q, x_o)`` is the cosine of a projection of each side (a fully connected network
per side, so image-caption ranking can score every phrase against every image's regions at the cost
of one product), times a fixed scale. The fused score multiplies the two softmax attentions
(coarse over the M proposals, fine over the K refined boxes): ReIR's raw scores can be negative,
and a product of two negative scores would rank a bad pair high. ``F_reg`` is a two-layer network
on ``[x_q * x_o, x_o]`` (ReIR: the phrase feature guides the offsets); its last layer starts at
zero, so offsets are exactly 0 until the self-taught regression loss trains them.

Not built (the synthetic benchmark's captions carry no parsed relations and no detector labels):
the visual object graph and the relation classifier, and the detector-label similarity ``s^a``.

    out = model(images [B,3,S,S], boxes [B,J,4], box_valid [B,J], phrase_tokens [B,E,T])
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapo_fast.models.proposal_grounder import PhraseEncoder, RegionEncoder
from dapo_fast.ops import box_decode


def _regressor(dim: int, hidden: int) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 4))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, J, ...] per image, index [B, E, K] -> [B, E, K, ...]."""
    B, E, K = index.shape
    flat = index.reshape(B, E * K)
    out = torch.gather(x, 1, flat.reshape(B, E * K, *([1] * (x.dim() - 2))).expand(B, E * K, *x.shape[2:]))
    return out.reshape(B, E, K, *x.shape[2:])


class MatchingHead(nn.Module):
    """``F_cls`` (scaled cosine of per-side projections) and ``F_reg`` for phrase-region pairs."""

    def __init__(self, dim: int, hidden: int, scale: float):
        super().__init__()
        self.phrase = nn.Linear(dim, dim)
        self.region = nn.Linear(dim, dim)
        self.reg = _regressor(dim, hidden)
        self.scale = scale

    def embed(self, phrase: torch.Tensor, region: torch.Tensor):
        return F.normalize(self.phrase(phrase), dim=-1), F.normalize(self.region(region), dim=-1)

    def offsets(self, phrase: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        """phrase [..., D] and region [..., D] (broadcast) -> offsets [..., 4]."""
        phrase, region = torch.broadcast_tensors(phrase, region)
        return self.reg(torch.cat([phrase * region, region], dim=-1))


class PhraseDecoder(nn.Module):
    """ReIR's phrase reconstruction ``LSTM_dec([z, q])``: teacher-forced word prediction from a
    visual feature z; returns the mean cross-entropy over the phrase's words (eq. 13, 14)."""

    def __init__(self, embed: nn.Embedding, dim: int, vocab_size: int):
        super().__init__()
        self.embed = embed
        self.start = nn.Parameter(torch.zeros(embed.embedding_dim))
        self.lstm = nn.LSTM(dim + embed.embedding_dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab_size)

    def forward(self, z: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """z [N, D], tokens [N, T], valid [N] -> mean word cross-entropy over valid phrases' words."""
        N, T = tokens.shape
        prev = torch.cat([self.start.expand(N, 1, -1), self.embed(tokens[:, :-1])], dim=1)
        h, _ = self.lstm(torch.cat([z[:, None].expand(N, T, -1), prev], dim=-1))
        logits = self.out(h)
        mask = (tokens != 0) & valid[:, None]
        ce = F.cross_entropy(logits.reshape(N * T, -1), tokens.reshape(-1), reduction="none").reshape(N, T)
        return (ce * mask).sum() / mask.sum().clamp(min=1)


class RefinementGrounder(nn.Module):
    def __init__(self, regions: RegionEncoder, phrases: PhraseEncoder, dim: int, vocab_size: int, top_k: int = 5,
                 refine: bool = True, hidden: int = 128, scale: float = 10.0):
        super().__init__()
        self.regions = regions
        self.phrases = phrases
        self.coarse = MatchingHead(dim, hidden, scale)
        self.fine = MatchingHead(dim, hidden, scale)
        self.decoder = PhraseDecoder(phrases.embed, dim, vocab_size)
        self.top_k = top_k
        self.refine = refine

    def forward(self, images: torch.Tensor, boxes: torch.Tensor, box_valid: torch.Tensor,
                phrase_tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Coarse: "coarse_q" [B,E,D], "coarse_o" [B,J,D] (unit embeddings), "coarse_scores" [B,E,J],
        "coarse_attn", "coarse_offsets" [B,E,J,4]. With refinement also "top" [B,E,K] (proposal
        indices), "top_boxes", "refined" [B,E,K,4], "fine_attn", "fine_offsets", "fused" [B,E,K].
        "rec": the phrase reconstruction loss from the attended features of each stage (computed
        here, inside the forward, so DDP sees the decoder used in it)."""
        S = images.shape[-1]
        feats = self.regions.feature_map(images)
        _, x_o = self.regions(feats, boxes, S)
        _, x_q, _ = self.phrases(phrase_tokens)
        cq, co = self.coarse.embed(x_q, x_o)
        scores = self.coarse.scale * torch.einsum("bed,bjd->bej", cq, co)
        scores = scores.masked_fill(~box_valid[:, None], float("-inf"))
        attn = scores.softmax(-1)
        B, E, T = phrase_tokens.shape
        tokens, real = phrase_tokens.reshape(B * E, T), (phrase_tokens != 0).any(-1).reshape(B * E)
        z_coarse = torch.einsum("bej,bjd->bed", attn, x_o)
        out = dict(coarse_q=cq, coarse_o=co, coarse_scores=scores, coarse_attn=attn,
                   coarse_offsets=self.coarse.offsets(x_q[:, :, None], x_o[:, None]), phrase=x_q,
                   rec=self.decoder(z_coarse.reshape(B * E, -1), tokens, real))
        if not self.refine:
            return out
        K = min(self.top_k, boxes.shape[1])
        top = scores.topk(K, dim=-1).indices                                    # [B, E, K]
        top_boxes = gather_rows(boxes, top)                                     # [B, E, K, 4]
        chosen = torch.gather(out["coarse_offsets"], 2, top[..., None].expand(B, E, K, 4))
        refined = clip_boxes(box_decode(chosen.detach(), top_boxes), S)
        _, x_r = self.regions(feats, refined.reshape(B, E * K, 4), S)
        x_r = x_r.reshape(B, E, K, -1)
        fq, fo = self.fine.embed(x_q[:, :, None], x_r)
        fine_attn = (self.fine.scale * (fq * fo).sum(-1)).softmax(-1)          # [B, E, K]
        z_fine = torch.einsum("bek,bekd->bed", fine_attn, x_r)
        out.update(top=top, top_boxes=top_boxes, refined=refined, fine_attn=fine_attn,
                   fine_offsets=self.fine.offsets(x_q[:, :, None], x_r),
                   fused=torch.gather(attn, 2, top) * fine_attn,
                   rec=out["rec"] + self.decoder(z_fine.reshape(B * E, -1), tokens, real))
        return out


def clip_boxes(boxes: torch.Tensor, size: int, min_size: float = 1.0) -> torch.Tensor:
    """Boxes clipped to a ``size`` square, at least ``min_size`` wide and high (a refined box
    must stay a box for RoIAlign and the IoU of the next round)."""
    x1 = boxes[..., 0].clamp(0, size - min_size)
    y1 = boxes[..., 1].clamp(0, size - min_size)
    x2 = torch.maximum(boxes[..., 2].clamp(max=size), x1 + min_size)
    y2 = torch.maximum(boxes[..., 3].clamp(max=size), y1 + min_size)
    return torch.stack([x1, y1, x2, y2], dim=-1)
