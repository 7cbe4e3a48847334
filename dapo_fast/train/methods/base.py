"""What a training method provides to the loop.

The loop calls, in order: ``Method(cfg, train_set, tokenizer, dist)`` (builds ``self.model``),
then every step ``collate`` -> ``forward_loss`` (compiled with ``torch.compile`` when
``train.compile``) -> backward -> optimiser step -> ``after_optimizer_step``. ``state_dict`` /
``load_state_dict`` carry whatever the method holds beyond ``self.model``'s weights (a momentum
teacher, say), so a resumed run continues bit-for-bit. Evaluation goes through ``evaluate``, whose
result the tables show through ``COLUMNS``; ``dapo-fast ablation --method NAME`` runs the variants in ``ABLATION``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch


class Method:
    NAME = ""
    Options: Any = None  # dataclass of the method's own options (YAML section NAME)
    DEFAULTS: Dict[str, Dict[str, Any]] = {}  # this method's defaults for the shared sections
    ABLATION: Dict[str, List[str]] = {}  # variant -> config overrides ("section.key=value")
    COLUMNS: List[Tuple[str, str]] = []  # table columns: (header, dotted path into evaluate's result)
    SUPPORTS_SCORE_S = False  # can compute its own semantic scores (the curriculum's ScoreS)

    def __init__(self, cfg, train_set, tokenizer, dist):
        self.cfg = cfg
        self.options = cfg.options
        self.tokenizer = tokenizer
        self.dist = dist
        self.model: torch.nn.Module = self.build_model()

    # ---------------------------------------------------------------- configuration
    @classmethod
    def validate_config(cls, cfg) -> None:
        """Raise ConfigError for option values (or combinations) this method cannot run."""
        if cfg.curriculum.score_s and not cls.SUPPORTS_SCORE_S:
            from dapo_fast.train.config import ConfigError

            raise ConfigError(f"config key 'curriculum.score_s' must be false for method '{cls.NAME}' "
                              f"(it has no semantic scorer)")

    # ---------------------------------------------------------------- training
    def build_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def encode_phrase(self, text: str) -> torch.Tensor:
        return self.tokenizer.encode(text, self.cfg.model.phrase_len)

    def collate(self, samples: List[Dict]) -> Dict[str, torch.Tensor]:
        """A training batch; it must never carry ground-truth boxes or masks (weak supervision)."""
        raise NotImplementedError

    def forward_loss(self, net: torch.nn.Module, batch: Dict[str, torch.Tensor], sreg: Optional[torch.Tensor],
                     gamma: torch.Tensor) -> Dict[str, torch.Tensor]:
        """{"loss": scalar to minimise, other entries: detached scalars to log}. ``net`` is
        ``self.model`` or its DDP wrapper; ``sreg`` the batch's self-paced scores (or None)."""
        raise NotImplementedError

    def after_optimizer_step(self, step: int) -> None:
        """Called after every optimiser step (``step`` counts completed steps)."""

    def semantic_scores(self, batches) -> torch.Tensor:
        """ScoreS [N, E] for the curriculum, from collated batches in dataset order."""
        raise NotImplementedError(f"method '{self.NAME}' has no semantic scorer")

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, dataset, limit: Optional[int] = None, png: Optional[str] = None) -> Dict[str, Any]:
        """Metrics on ``dataset`` (first ``limit`` samples); a picture at ``png`` when given."""
        raise NotImplementedError

    @staticmethod
    def headline(result: Dict[str, Any]) -> str:
        """One line summarising a result of ``evaluate``."""
        raise NotImplementedError
