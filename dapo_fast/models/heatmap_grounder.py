"""HeatmapGrounder: image encoder + text encoder + decoder -> one sigmoid heatmap per entity (WWbL's shape).

    out = model(images [B,3,S,S], phrase_tokens [B,E,T], entity_valid [B,E])
    out["logits"]        [B,E,h,w]   pre-sigmoid heatmap (h = w = S / stride)
    out["heatmaps"]      [B,E,h,w]   sigmoid(logits), zero for invalid entities
    out["pixel_embed"]   [B,D,h,w]   per-location embedding that the task loss pools under the heatmap
    out["text_embed"]    [B,E,D]     entity embedding (the task loss contrasts against it)

The decoder conditions every location on the entity by a channel-wise product of the location's
feature with the entity embedding, followed by a per-location MLP: cheap (1x1 convolutions) and it
lets the heatmap for "red circle" light up where "red" and "circle" features co-occur. A scaled
cosine similarity between the location's embedding and the entity embedding is added to the logits
(``similarity_logits``), so the heatmap's peak is where the task loss's embeddings agree.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from dapo_fast.models.backbones import (BagOfWordsText, OpenClipImage, OpenClipText, OpenClipTokenizer,
                                        SmallCNN, create_open_clip)


@dataclasses.dataclass
class ModelConfig:
    backbone: str = "small"  # "small" (CPU, random init) | "open_clip"
    dim: int = 64  # joint embedding width
    cnn_width: int = 32
    cnn_depth: int = 3
    # small backbone: input pixels per heatmap cell (2 or 4) and the pooling of the features the
    # decoder's MLP reads (2: the MLP at stride 4, the similarity map at stride 2). Measured at the
    # demo's budget: stride 4 -> 2 took bbox accuracy from 32.3% to 62.6% (docs/training.md)
    stride: int = 2
    decoder_pool: int = 2
    text_width: int = 64
    decoder_width: int = 32
    phrase_len: int = 8  # tokens per phrase for the small text encoder (open_clip uses 77)
    open_clip_model: str = "ViT-B-16"
    pretrained: Optional[str] = None  # local open_clip weights file
    freeze_backbone: bool = True


class HeatmapGrounder(nn.Module):
    """``decoder_pool`` > 1 runs the decoder's per-location MLP on the features average-pooled by that
    factor and upsamples its logits (bilinear, centres kept); the similarity logits stay at the
    encoder's resolution. A stride-2 encoder then gives stride-2 heatmaps, with the MLP's cost of a
    stride-4 map: the edges come from the fine similarity map."""

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, dim: int = 64, decoder_width: int = 32,
                 similarity_logits: bool = True, decoder_pool: int = 1):
        super().__init__()
        if decoder_pool < 1:
            raise ValueError(f"decoder_pool must be >= 1, got {decoder_pool}")
        self.similarity_logits = similarity_logits
        self.decoder_pool = decoder_pool
        self.sim_scale = nn.Parameter(torch.tensor(5.0))
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.stride = image_encoder.stride
        self.pix = nn.Conv2d(dim, dim, 1)
        self.embed = nn.Conv2d(dim, dim, 1)
        self.text_proj = nn.Linear(dim, dim)
        self.decoder = nn.Sequential(nn.Conv2d(dim, decoder_width, 1), nn.ReLU(inplace=True),
                                     nn.Conv2d(decoder_width, 1, 1))

    def encode_text(self, phrase_tokens: torch.Tensor) -> torch.Tensor:
        return self.text_encoder(phrase_tokens)

    def forward(self, images: torch.Tensor, phrase_tokens: torch.Tensor,
                entity_valid: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        feats = self.image_encoder(images)  # [B,D,h,w]
        text = self.encode_text(phrase_tokens)  # [B,E,D]
        B, D, h, w = feats.shape
        E = text.shape[1]
        coarse = F.avg_pool2d(feats, self.decoder_pool, ceil_mode=True) if self.decoder_pool > 1 else feats
        hc, wc = coarse.shape[-2:]
        cond = self.pix(coarse).unsqueeze(1) * self.text_proj(text)[..., None, None]  # [B,E,D,hc,wc]
        logits = self.decoder(cond.reshape(B * E, D, hc, wc))
        if (hc, wc) != (h, w):
            logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
        logits = logits.reshape(B, E, h, w)
        pixel_embed = self.embed(feats)
        if self.similarity_logits:
            sim = torch.einsum("bdhw,bed->behw", F.normalize(pixel_embed, dim=1), F.normalize(text, dim=-1))
            logits = logits + self.sim_scale * sim
        heatmaps = torch.sigmoid(logits)
        if entity_valid is not None:
            heatmaps = heatmaps * entity_valid[..., None, None].to(heatmaps.dtype)
        return dict(logits=logits, heatmaps=heatmaps, pixel_embed=pixel_embed, text_embed=text)


def build_encoders(cfg: ModelConfig, vocab_size: int = 0):
    """(image encoder, text encoder) of a config, shared by the grounders: the small backbone needs
    ``vocab_size`` (of a WordTokenizer); the open_clip one loads ``cfg.pretrained`` from a local file
    (its tokenizer is :class:`OpenClipTokenizer`)."""
    if cfg.backbone == "small":
        if vocab_size < 2:
            raise ValueError("the small backbone needs vocab_size >= 2 (from the dataset's WordTokenizer)")
        image = SmallCNN(cfg.dim, cfg.cnn_width, cfg.cnn_depth, stride=cfg.stride)
        return image, BagOfWordsText(vocab_size, cfg.dim, cfg.text_width)
    if cfg.backbone == "open_clip":
        clip = create_open_clip(cfg.open_clip_model, cfg.pretrained)
        image = OpenClipImage(cfg.open_clip_model, out_dim=cfg.dim, freeze=cfg.freeze_backbone, clip_model=clip)
        text = OpenClipText(cfg.open_clip_model, out_dim=cfg.dim, freeze=cfg.freeze_backbone, clip_model=clip)
        return image, text
    raise ValueError(f"model.backbone must be 'small' or 'open_clip', got {cfg.backbone!r}")


def build_model(cfg: ModelConfig, vocab_size: int = 0):
    """(model, tokenizer) for a config (tokenizer None for the small backbone: the loop builds a
    WordTokenizer from the training phrases)."""
    image, text = build_encoders(cfg, vocab_size)
    tokenizer = OpenClipTokenizer(cfg.open_clip_model) if cfg.backbone == "open_clip" else None
    return HeatmapGrounder(image, text, cfg.dim, cfg.decoder_width, decoder_pool=cfg.decoder_pool), tokenizer
