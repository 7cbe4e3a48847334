"""Proposal-based phrase grounding: an image backbone, RoIAlign over the proposals, region
features; a phrase encoder; a matching head. The shared parts of MPL, ReIR and QueryMatch/AlignCAT
live here, with MPL's dual encoder (:class:`DualEncoderGrounder`); ReIR's coarse-to-fine network is
:mod:`dapo_fast.models.refinement_grounder`, AlignCAT's query matcher
:mod:`dapo_fast.models.query_grounder`.

Boxes are in the model's input frame: pixels of the ``[B, 3, S, S]`` input (the collator scales
each image's proposals by its resize factors). A region's feature is RoIAlign (``aligned=True``,
``sampling_ratio=2``, ``spatial_scale = 1 / stride``: ReIR's settings) of the backbone map over its
box, through Faster R-CNN's two-layer head, plus an embedding of the box geometry (ReIR fuses a
region's "spatial feature" with its appearance). The mean of the pooled map is kept as well:
``pooled`` is the analogue of the detector's raw region feature (MPL's ``v``).
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn

from dapo_fast.models.backbones import OpenClipImage, SmallCNN, create_open_clip
from dapo_fast.ops import roi_align

GEOMETRY = 5  # x1, y1, x2, y2 (fractions of the input side), sqrt(area fraction)


def rois_of(boxes: torch.Tensor) -> torch.Tensor:
    """[B, J, 4] boxes -> [B * J, 5] rows (batch index, x1, y1, x2, y2) for roi_align."""
    B, J = boxes.shape[:2]
    index = torch.arange(B, device=boxes.device, dtype=boxes.dtype).repeat_interleave(J)[:, None]
    return torch.cat([index, boxes.reshape(B * J, 4)], dim=1)


def box_geometry(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """[..., 4] boxes in an input of side ``size`` -> [..., 5] scale-free geometry."""
    b = boxes / size
    area = ((b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)).sqrt()
    return torch.cat([b, area[..., None]], dim=-1)


class RegionEncoder(nn.Module):
    """Image -> backbone map; (map, boxes) -> region features via RoIAlign.

    ``per_image_rois=True`` calls RoIAlign once per image (the papers' reference code form) instead
    of once per batch: same numbers, it exists to measure what the batched op buys.
    """

    def __init__(self, image_encoder: nn.Module, channels: int, dim: int, pool: int = 7, hidden: int = 128,
                 sampling_ratio: int = 2):
        super().__init__()
        self.image_encoder = image_encoder
        self.stride = image_encoder.stride
        self.pool_size = pool
        self.sampling_ratio = sampling_ratio
        self.per_image_rois = False
        self.head = nn.Sequential(nn.Linear(channels * pool * pool, hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, dim))
        self.geometry = nn.Linear(GEOMETRY, dim)

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(images)

    def roi_features(self, feats: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """RoIAlign of every box: [B, J, 4] -> [B * J, C, P, P]."""
        args = dict(output_size=self.pool_size, spatial_scale=1.0 / self.stride, sampling_ratio=self.sampling_ratio,
                    aligned=True)
        if self.per_image_rois:
            return torch.cat([roi_align(feats[i:i + 1], [boxes[i]], **args) for i in range(boxes.shape[0])])
        return roi_align(feats, rois_of(boxes), **args)

    def pooled(self, feats: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """[B, J, C]: the mean of each box's RoIAlign map (the raw region feature)."""
        return self.roi_features(feats, boxes).mean(dim=(2, 3)).reshape(*boxes.shape[:2], -1)

    def forward(self, feats: torch.Tensor, boxes: torch.Tensor, input_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(pooled [B, J, C]: mean of the RoIAlign map, region [B, J, dim]) for boxes [B, J, 4]."""
        B, J = boxes.shape[:2]
        rois = self.roi_features(feats, boxes)
        pooled = rois.mean(dim=(2, 3)).reshape(B, J, -1)
        # flattened in (y, x, channel) order: a view of the channels-last maps the backbone gives, not a copy
        region = self.head(rois.permute(0, 2, 3, 1).reshape(B * J, -1)).reshape(B, J, -1)
        region = region + self.geometry(box_geometry(boxes, input_size))
        return pooled, region


class PhraseEncoder(nn.Module):
    """Token ids [..., T] (0 = padding) -> word states [..., T, dim], phrase feature [..., dim].

    A recurrent network over word embeddings (MPL and ReIR: an LSTM; AlignCAT's word branch: a
    bidirectional GRU); the phrase feature is the mean of its word states (ReIR eq. 1; MPL sums
    them and scales by a constant, the same up to that scale for phrases of one length).
    Sequences are packed, so padding never enters a state (it would in the backward direction).
    """

    def __init__(self, vocab_size: int, word_dim: int, dim: int, cell: str = "lstm", bidirectional: bool = False,
                 embedding: Optional[torch.Tensor] = None, freeze_embedding: bool = False):
        super().__init__()
        if cell not in ("lstm", "gru"):
            raise ValueError(f"cell must be 'lstm' or 'gru', got {cell!r}")
        if bidirectional and dim % 2:
            raise ValueError(f"a bidirectional phrase encoder needs an even dim, got {dim}")
        if embedding is not None:
            self.embed = nn.Embedding.from_pretrained(embedding, freeze=freeze_embedding, padding_idx=0)
        else:
            self.embed = nn.Embedding(vocab_size, word_dim, padding_idx=0)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(self.embed.embedding_dim, dim // 2 if bidirectional else dim, batch_first=True,
                       bidirectional=bidirectional)
        self.dim = dim

    def forward(self, tokens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(words [..., T, dim], phrase [..., dim], mask bool [..., T])."""
        lead, T = tokens.shape[:-1], tokens.shape[-1]
        flat = tokens.reshape(-1, T)
        mask = flat != 0
        lengths = mask.sum(-1).clamp(min=1).cpu()  # an empty slot (no entity) runs one padding step
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(flat), lengths, batch_first=True, enforce_sorted=False)
        states, _ = self.rnn(packed)
        words, _ = nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=T)
        m = mask[..., None].to(words.dtype)
        phrase = (words * m).sum(-2) / m.sum(-2).clamp(min=1.0)
        return words.reshape(*lead, T, -1), phrase.reshape(*lead, -1), mask.reshape(*lead, T)


def build_encoders(cfg, vocab_size: int, pool: int, head_hidden: int, cell: str = "lstm",
                   bidirectional: bool = False) -> Tuple[RegionEncoder, PhraseEncoder]:
    """The region and phrase encoders for a ``ModelConfig``.

    ``small``: SmallCNN (random init, stride 4) and word embeddings of the WordTokenizer's vocabulary
    (``vocab_size``). ``open_clip``: the open_clip ViT's patch map (``cfg.pretrained``, a local
    weights file; frozen with ``cfg.freeze_backbone``) and open_clip's token embedding table as the
    word embeddings (MPL uses GloVe vectors the same way), under a trained recurrent encoder.
    """
    if cfg.backbone == "small":
        if vocab_size < 2:
            raise ValueError("the small backbone needs vocab_size >= 2 (from the dataset's WordTokenizer)")
        image = SmallCNN(cfg.dim, cfg.cnn_width, cfg.cnn_depth)
        phrases = PhraseEncoder(vocab_size, cfg.text_width, cfg.dim, cell, bidirectional)
    elif cfg.backbone == "open_clip":
        clip = create_open_clip(cfg.open_clip_model, cfg.pretrained)
        table = clip.token_embedding.weight.detach().clone()
        image = OpenClipImage(cfg.open_clip_model, out_dim=cfg.dim, freeze=cfg.freeze_backbone, clip_model=clip)
        phrases = PhraseEncoder(table.shape[0], table.shape[1], cfg.dim, cell, bidirectional, embedding=table,
                                freeze_embedding=cfg.freeze_backbone)
    else:
        raise ValueError(f"model.backbone must be 'small' or 'open_clip', got {cfg.backbone!r}")
    return RegionEncoder(image, cfg.dim, cfg.dim, pool, head_hidden), phrases


class DualEncoderGrounder(nn.Module):
    """MPL's phrase-region dual encoder: regions ``k = E(W_k v + geometry)`` with E a transformer
    encoder of ``context_layers`` layers over the regions of one image, or none when 0 (MPL adds
    the detector's label embedding; the proposals here are class-agnostic, so the box geometry
    takes its place), phrases ``q = W_q(phrase)``; score ``<q, k>``.

        out = model(images [B,3,S,S], boxes [B,J,4], box_valid [B,J], phrase_tokens [B,E,T])
        out["region"] [B,J,D], out["phrase"] [B,E,D], out["pooled"] [B,J,C], out["scores"] [B,E,J]
    """

    def __init__(self, regions: RegionEncoder, phrases: PhraseEncoder, dim: int, context_layers: int = 1,
                 heads: int = 4):
        super().__init__()
        self.regions = regions
        self.phrases = phrases
        self.region_proj = nn.Linear(dim, dim)
        self.phrase_proj = nn.Linear(phrases.dim, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True)
        self.context = (nn.TransformerEncoder(layer, context_layers, enable_nested_tensor=False) if context_layers
                        else None)

    def forward(self, images: torch.Tensor, boxes: torch.Tensor, box_valid: torch.Tensor,
                phrase_tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.regions.feature_map(images)
        pooled, region = self.regions(feats, boxes, images.shape[-1])
        k = self.region_proj(region)
        if self.context is not None:
            k = self.context(k, src_key_padding_mask=~box_valid)
        _, phrase, _ = self.phrases(phrase_tokens)
        q = self.phrase_proj(phrase)
        scores = torch.einsum("bed,bjd->bej", q, k)
        return dict(region=k, phrase=q, pooled=pooled, scores=scores)
