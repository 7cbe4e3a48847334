"""QueryMatch / AlignCAT's query-text matcher, with proposals as the visual queries.

QueryMatch (Chen et al., MM 2024) and AlignCAT (Wang et al., MM 2025) match a referring
expression against the queries of a frozen query-based detector. Here the queries are the
proposals' region features (:class:`~dapo_fast.models.proposal_grounder.RegionEncoder`), and:

* global space (AlignCAT eq. 6-8; QueryMatch's only space): ``S_global = <W_q f_q + b, W_t f_t + b>``
  with ``f_t`` the expression's feature (mean of its word states);
* fine space (eq. 10-14): word states of a bidirectional GRU, weighted by ``softmax(FC(words))``
  over the expression's words (adaptive phrase attention), summed, projected; ``S_fine`` is the dot
  product with another projection of the query;
* a text classifier on ``f_t`` (eq. 18: predicts the expression's category at inference);
* the queries' categories (AlignCAT: the frozen detector's class head): each category word is
  encoded as a phrase and projected into the global space, and a query's category scores are its
  ``S_global`` with those words. So the category comes from the same image-caption alignment as
  everything else, weakly supervised, with no head of its own (a separately trained class head
  has no image-level negatives here, see :mod:`dapo_fast.losses.querymatch`).

    out = model(images [B,3,S,S], boxes [B,J,4], box_valid [B,J], phrase_tokens [B,E,T])
    out["global_q"] [B,J,D], out["global_t"] [B,E,D], out["fine_q"] [B,J,D], out["fine_t"] [B,E,D],
    out["s_global"], out["s_fine"] [B,E,J], out["query_logits"] [B,J,C], out["text_logits"] [B,E,C]
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn as nn

from dapo_fast.models.proposal_grounder import PhraseEncoder, RegionEncoder


class QueryGrounder(nn.Module):
    def __init__(self, regions: RegionEncoder, phrases: PhraseEncoder, dim: int, category_tokens: torch.Tensor):
        super().__init__()
        self.regions = regions
        self.phrases = phrases
        self.global_q = nn.Linear(dim, dim)
        self.global_t = nn.Linear(phrases.dim, dim)
        self.word_weight = nn.Linear(phrases.dim, 1)
        self.fine_q = nn.Linear(dim, dim)
        self.fine_t = nn.Linear(phrases.dim, dim)
        self.text_classifier = nn.Linear(phrases.dim, category_tokens.shape[0])
        self.register_buffer("category_tokens", category_tokens.clone())  # [C, T]: each category word

    def forward(self, images: torch.Tensor, boxes: torch.Tensor, box_valid: torch.Tensor,
                phrase_tokens: torch.Tensor) -> Dict[str, torch.Tensor]:
        feats = self.regions.feature_map(images)
        _, f_q = self.regions(feats, boxes, images.shape[-1])
        words, f_t, mask = self.phrases(phrase_tokens)
        weights = self.word_weight(words)[..., 0].masked_fill(~mask, float("-inf"))
        # a slot without words (no entity) would softmax over nothing: give it uniform weights
        weights = torch.where(mask.any(-1, keepdim=True), weights, torch.zeros_like(weights)).softmax(-1)
        f_w = torch.einsum("bet,betd->bed", weights, words)
        _, f_c, _ = self.phrases(self.category_tokens)
        out = dict(global_q=self.global_q(f_q), global_t=self.global_t(f_t), fine_q=self.fine_q(f_q),
                   fine_t=self.fine_t(f_w), text_logits=self.text_classifier(f_t), word_weights=weights)
        out["query_logits"] = torch.einsum("bjd,cd->bjc", out["global_q"], self.global_t(f_c))
        out["s_global"] = torch.einsum("bed,bjd->bej", out["global_t"], out["global_q"])
        out["s_fine"] = torch.einsum("bed,bjd->bej", out["fine_t"], out["fine_q"])
        return out
