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
    text_width: int = 64
    decoder_width: int = 32
    phrase_len: int = 8  # tokens per phrase for the small text encoder (open_clip uses 77)
    open_clip_model: str = "ViT-B-16"
    pretrained: Optional[str] = None  # local open_clip weights file
    freeze_backbone: bool = True


class HeatmapGrounder(nn.Module):
    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, dim: int = 64, decoder_width: int = 32,
                 similarity_logits: bool = True):
        super().__init__()
        self.similarity_logits = similarity_logits
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
        cond = self.pix(feats).unsqueeze(1) * self.text_proj(text)[..., None, None]  # [B,E,D,h,w]
        logits = self.decoder(cond.reshape(B * E, D, h, w)).reshape(B, E, h, w)
        if self.similarity_logits:
            sim = torch.einsum("bdhw,bed->behw", F.normalize(self.embed(feats), dim=1), F.normalize(text, dim=-1))
            logits = logits + self.sim_scale * sim
        heatmaps = torch.sigmoid(logits)
        if entity_valid is not None:
            heatmaps = heatmaps * entity_valid[..., None, None].to(heatmaps.dtype)
        return dict(logits=logits, heatmaps=heatmaps, pixel_embed=self.embed(feats), text_embed=text)


def build_model(cfg: ModelConfig, vocab_size: int = 0):
    """(model, tokenizer) for a config. The small backbone needs ``vocab_size`` (of a WordTokenizer);
    the open_clip one brings its own tokenizer and loads ``cfg.pretrained`` from a local file."""
    if cfg.backbone == "small":
        if vocab_size < 2:
            raise ValueError("the small backbone needs vocab_size >= 2 (from the dataset's WordTokenizer)")
        image = SmallCNN(cfg.dim, cfg.cnn_width, cfg.cnn_depth)
        text = BagOfWordsText(vocab_size, cfg.dim, cfg.text_width)
        return HeatmapGrounder(image, text, cfg.dim, cfg.decoder_width), None
    if cfg.backbone == "open_clip":
        clip = create_open_clip(cfg.open_clip_model, cfg.pretrained)
        image = OpenClipImage(cfg.open_clip_model, out_dim=cfg.dim, freeze=cfg.freeze_backbone, clip_model=clip)
        text = OpenClipText(cfg.open_clip_model, out_dim=cfg.dim, freeze=cfg.freeze_backbone, clip_model=clip)
        return HeatmapGrounder(image, text, cfg.dim, cfg.decoder_width), OpenClipTokenizer(cfg.open_clip_model)
    raise ValueError(f"model.backbone must be 'small' or 'open_clip', got {cfg.backbone!r}")
