"""QueryMatch (Chen et al., MM 2024) and AlignCAT (Wang et al., MM 2025): query-text contrastive
matching with hard negative queries; AlignCAT adds category-then-attribute positive selection.

Model: :class:`~dapo_fast.models.query_grounder.QueryGrounder`. Loss:
:func:`~dapo_fast.losses.querymatch.querymatch_loss`. Each entity phrase of a caption is one
referring expression. ``aligncat: true`` (default) is AlignCAT; ``false`` is QueryMatch (global
space only, positive = best ``S_global``).

Categories: an expression's category is the first of its words found in ``categories`` (the
synthetic benchmark's shape words by default; for RefCOCO give the category names), read from
the text only; -1 when none is there (no category term then). During training AlignCAT injects
this category into ``S_class``; at inference it uses its text classifier's prediction, as the
paper does (its Table 4, last row). The queries' categories are their global-space scores with
the category words (the paper's come from a frozen detector's class head; see
:mod:`dapo_fast.losses.querymatch` for why no class head is trained here). ``class_start`` delays
``S_class`` in training.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import torch

from dapo_fast.data.sample import encode_phrases, words
from dapo_fast.data.synthetic import SHAPES
from dapo_fast.eval import proposals as proposal_eval
from dapo_fast.losses.querymatch import querymatch_loss, select_positive
from dapo_fast.models.proposal_grounder import build_encoders
from dapo_fast.models.query_grounder import QueryGrounder
from dapo_fast.train.methods.proposals import ProposalMethod, ProposalOptions, proposal_defaults


@dataclasses.dataclass
class QueryMatchOptions(ProposalOptions):
    aligncat: bool = True  # AlignCAT's coarse (S_class + S_global) then fine selection, both spaces; false: QueryMatch
    negatives: str = dataclasses.field(default="hard", metadata={"choices": ("hard", "random", "all")})
    uniqueness: str = dataclasses.field(default="paper", metadata={"choices": ("paper", "pairwise")})
    num_negatives: int = 4  # per other image (QueryMatch: 4)
    alpha: float = 100.0  # weight of S_class in S_coarse (AlignCAT: 100)
    top_k: int = 10  # queries kept after coarse alignment (AlignCAT: K = 10)
    tau: float = 1.0  # InfoNCE temperature on the dot products (QueryMatch's code: none, i.e. 1)
    cl_weight: float = 1.0  # lambda_1
    ce_weight: float = 1.0  # lambda_2 (text classifier)
    categories: List[str] = dataclasses.field(default_factory=lambda: list(SHAPES))
    class_start: float = 0.0  # share of the run before S_class enters training's positive selection


class QueryMatch(ProposalMethod):
    NAME = "querymatch"
    Options = QueryMatchOptions
    DEFAULTS = proposal_defaults("querymatch")
    # without hard-negative selection (every query of every other image is a negative), and with it
    # under QueryMatch's code's uniqueness and the paper's
    ABLATION = {
        "all-negatives": ["querymatch.negatives=all"],
        "hard-pairwise": ["querymatch.negatives=hard", "querymatch.uniqueness=pairwise"],
        "hard-paper": ["querymatch.negatives=hard", "querymatch.uniqueness=paper"],
    }
    COLUMNS = proposal_eval.columns({"Category %": "category_accuracy"})

    def __init__(self, cfg, train_set, tokenizer, dist):
        self.category_index = {c.lower(): i for i, c in enumerate(cfg.options.categories)}
        super().__init__(cfg, train_set, tokenizer, dist)

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        from dapo_fast.train.config import ConfigError

        o = cfg.options
        if not o.categories:
            raise ConfigError("config key 'querymatch.categories' must name at least one category word")
        if len({c.lower() for c in o.categories}) != len(o.categories):
            raise ConfigError(f"config key 'querymatch.categories' has duplicates: {o.categories}")
        for key in ("num_negatives", "top_k"):
            if getattr(o, key) < 1:
                raise ConfigError(f"config key 'querymatch.{key}' must be >= 1, got {getattr(o, key)}")
        if not o.tau > 0:
            raise ConfigError(f"config key 'querymatch.tau' must be > 0, got {o.tau}")
        if not 0.0 <= o.class_start <= 1.0:
            raise ConfigError(f"config key 'querymatch.class_start' must be a share of the run in [0, 1], "
                              f"got {o.class_start}")

    def build_model(self) -> torch.nn.Module:
        o = self.options
        regions, phrases = build_encoders(self.cfg.model, self.vocab_size, o.pool_size, o.head_hidden, cell="gru",
                                          bidirectional=True)
        category_tokens = torch.stack([self.encode_phrase(c) for c in o.categories])
        model = QueryGrounder(regions, phrases, self.cfg.model.dim, category_tokens)
        model.regions.per_image_rois = o.code_form
        return model

    def category_of(self, phrase: str) -> int:
        for w in words(phrase):
            if w in self.category_index:
                return self.category_index[w]
        return -1

    def text_targets(self, samples: List[Dict]) -> Dict[str, torch.Tensor]:
        E = self.cfg.data.max_entities
        out = torch.full((len(samples), E), -1, dtype=torch.long)
        for b, s in enumerate(samples):
            for e, phrase in enumerate(s["phrases"][:E]):
                out[b, e] = self.category_of(phrase)
        return {"text_class": out}

    def _run(self, net, batch):
        return net(batch["images"], batch["boxes"], batch["box_valid"], batch["phrase_tokens"])

    def forward_loss(self, net, batch, sreg, gamma):
        o = self.options
        out = self._run(net, batch)
        return querymatch_loss(out, batch, o.aligncat, self.class_on, o.negatives,
                               o.num_negatives, o.uniqueness, o.alpha, o.top_k, o.tau, o.cl_weight, o.ce_weight,
                               o.code_form)

    def update_schedule(self) -> None:
        self.class_on = self.progress() >= self.options.class_start

    @torch.no_grad()
    def predict(self, batch: Dict) -> Dict[str, torch.Tensor]:
        o = self.options
        out = self._run(self.model, batch)
        text_class = out["text_logits"].argmax(-1)  # inference: the text classifier's category (c^T)
        best = select_positive(out["s_global"], out["s_fine"], out["query_logits"].argmax(-1), text_class,
                               batch["box_valid"], o.aligncat, True, o.alpha, o.top_k)
        return {"box": torch.gather(batch["boxes"], 1, best[..., None].expand(-1, -1, 4))}

    def extra_metrics(self, dataset, limit=None) -> Dict[str, float]:
        return {"category_accuracy": self.text_category_accuracy(dataset, limit)}

    @torch.no_grad()
    def text_category_accuracy(self, dataset, limit=None, batch_size: int = 256) -> float:
        """Share (%) of expressions with a category word whose category the text classifier predicts."""
        n = len(dataset) if limit is None else min(limit, len(dataset))
        hit = total = 0
        for i0 in range(0, n, batch_size):
            samples = [dataset[i] for i in range(i0, min(n, i0 + batch_size))]
            target = self.text_targets(samples)["text_class"]
            tokens, _ = encode_phrases(samples, self.encode_phrase, self.cfg.data.max_entities)
            _, f_t, _ = self.model.phrases(tokens)
            pred = self.model.text_classifier(f_t).argmax(-1)
            known = target >= 0
            hit += int((pred == target)[known].sum())
            total += int(known.sum())
        return 100.0 * hit / max(1, total)


METHOD = QueryMatch
