"""What the proposal-based methods (MPL, ReIR, QueryMatch/AlignCAT) share: options, the batch,
the step counter their schedules read, evaluation.

A training batch holds what the papers' weakly supervised training sees and nothing else: the
image, the phrases (token ids and which slots are real) and the proposals, i.e. the detector's
output (the synthetic benchmark's class-agnostic boxes, or a detections file for real data; see
:mod:`dapo_fast.data.detections`). No ground-truth box or mask, and nothing that says which
proposal is right, is ever collated for training; ``collate_eval`` adds them for evaluation only.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import torch

from dapo_fast.data.detections import collate_proposals, load_detections
from dapo_fast.data.sample import WordTokenizer, encode_phrases, load_image, prepare_images
from dapo_fast.eval import proposals as proposal_eval
from dapo_fast.train.methods.base import Method


def proposal_defaults(name: str, max_steps: int = 400, lr: float = 0.001) -> Dict:
    """A proposal method's defaults for the shared sections: no curriculum (the papers have none),
    the synthetic benchmark at the demo's size, its own run directory and budget, and eager steps:
    measured with benchmarks/compile_train_step.py (B=64, 1 thread), compiled steps are 1.20x (MPL),
    0.99x (ReIR) and 1.25x (QueryMatch) as fast, but the compile (95-125 s on the loaded 2-core
    machine; the phrase encoder's packed LSTM splits the step into several graphs) pays back only
    after 600 (QueryMatch) to 2300 (MPL) steps, more than the default 400; ``train.compile: true``
    works (one recompile per schedule switch)."""
    return {"curriculum": {"score_q": False, "score_s": False}, "optim": {"lr": lr},
            "train": {"out_dir": f"runs/{name}", "max_steps": max_steps, "compile": False, "log_every": 25,
                      "ckpt_every": 500}}


@dataclasses.dataclass
class ProposalOptions:
    """Options every proposal method has (its YAML section adds its own)."""
    pool_size: int = 7  # RoIAlign output side (ReIR: 7x7)
    head_hidden: int = 128  # width of the two-layer region head
    proposals: Optional[str] = None  # real data: detections JSONL (dapo_fast.data.detections); synthetic: unused
    max_proposals: int = 0  # keep the most confident boxes per image (0: all)
    code_form: bool = False  # run the papers' public-code forms of the ops' computations (to measure what the ops buy)


class ProposalMethod(Method):
    """Base of the proposal methods: batches, predictions in the input frame, evaluation."""

    def __init__(self, cfg, train_set, tokenizer, dist):
        self.step = 0  # completed optimiser steps (the schedules follow it; restored on resume)
        self.detections = load_detections(cfg.options.proposals) if cfg.options.proposals else None
        super().__init__(cfg, train_set, tokenizer, dist)
        self.update_schedule()

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        from dapo_fast.train.config import ConfigError

        o = cfg.options
        for key in ("pool_size", "head_hidden"):
            if getattr(o, key) < 1:
                raise ConfigError(f"config key '{cls.NAME}.{key}' must be >= 1, got {getattr(o, key)}")
        if o.max_proposals < 0:
            raise ConfigError(f"config key '{cls.NAME}.max_proposals' must be >= 0, got {o.max_proposals}")

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer) if isinstance(self.tokenizer, WordTokenizer) else 0

    # ---------------------------------------------------------------- batches
    def _collate(self, samples: List[Dict]) -> Dict:
        size = self.cfg.data.image_size
        raw = [load_image(s["image"]) for s in samples]
        sizes = torch.tensor([list(r.shape[-2:]) for r in raw], dtype=torch.long)
        tokens, valid = encode_phrases(samples, self.encode_phrase, self.cfg.data.max_entities)
        boxes, box_valid = collate_proposals(samples, sizes, size, self.detections, self.options.max_proposals)
        dtype = torch.get_default_dtype()  # float64 runs (the ops-agreement test) get float64 batches
        batch = dict(images=prepare_images(raw, size).to(dtype), phrase_tokens=tokens, entity_valid=valid,
                     boxes=boxes.to(dtype), box_valid=box_valid)
        batch.update(self.text_targets(samples))
        return dict(batch=batch, raw=raw, sizes=sizes)

    def text_targets(self, samples: List[Dict]) -> Dict[str, torch.Tensor]:
        """Extra per-phrase targets read from the text alone (AlignCAT's category); none by default."""
        return {}

    def collate(self, samples: List[Dict]) -> Dict[str, torch.Tensor]:
        return self._collate(samples)["batch"]

    def collate_eval(self, samples: List[Dict]) -> Dict:
        """``collate`` plus the ground truth and image sizes (evaluation only)."""
        c = self._collate(samples)
        E = self.cfg.data.max_entities
        return dict(c["batch"], raw_images=c["raw"], image_sizes=c["sizes"],
                    num_objects=torch.tensor([s["num_objects"] for s in samples], dtype=torch.long),
                    gt_boxes=[list(s["gt_boxes"] or [])[:E] for s in samples],
                    phrases=[s["phrases"][:E] for s in samples])

    # ---------------------------------------------------------------- training
    def ddp_options(self) -> Dict:
        # heads that a variant or a schedule leaves out of the loss (ReIR's regressors before the
        # self-taught term starts, QueryMatch without AlignCAT's fine space and classifiers)
        return {"find_unused_parameters": True}

    def after_optimizer_step(self, step: int) -> None:
        self.step = step
        self.update_schedule()

    def progress(self) -> float:
        """Share of the run done, in [0, 1] (for the schedules)."""
        return min(1.0, self.step / max(1, self.cfg.train.max_steps))

    def update_schedule(self) -> None:
        """Set what the step counter decides (a term switched on, a temperature) as attributes
        ``forward_loss`` reads: flags that change once and tensors filled in place, so a compiled
        step recompiles at most once per switch instead of at every step."""

    def state_dict(self) -> Dict:
        return {"step": self.step}

    def load_state_dict(self, state: Dict) -> None:
        self.step = int(state.get("step", 0))
        self.update_schedule()

    # ---------------------------------------------------------------- evaluation
    def predict(self, batch: Dict) -> Dict[str, torch.Tensor]:
        """Named boxes [B, E, 4] in the input frame: "box" = the grounding result."""
        raise NotImplementedError

    def _predict_eval(self, batch: Dict) -> Dict[str, torch.Tensor]:
        was_training = self.model.training
        self.model.eval()
        try:
            return self.predict(batch)
        finally:
            self.model.train(was_training)

    def evaluate(self, dataset, limit: Optional[int] = None, png: Optional[str] = None) -> Dict:
        size = self.cfg.data.image_size
        res = proposal_eval.evaluate(self._predict_eval, self.collate_eval, dataset, size, limit=limit)
        res.update(self.extra_metrics(dataset, limit))
        if png:
            proposal_eval.save_grid(self._predict_eval, self.collate_eval, dataset, size, png)
            res["png"] = png
        return res

    def extra_metrics(self, dataset, limit: Optional[int] = None) -> Dict[str, float]:
        """Method-specific numbers for the result (and its COLUMNS); none by default."""
        return {}

    @staticmethod
    def headline(result: Dict) -> str:
        return (f"accuracy@0.5 {result['acc']:.1f}% overall, {result['subsets']['6+']['acc']:.1f}% on 6+ objects "
                f"(oracle {result['oracle']:.1f}%, random proposal {result['random']:.1f}%)")


def pick_boxes(scores: torch.Tensor, boxes: torch.Tensor, box_valid: torch.Tensor) -> torch.Tensor:
    """The best-scoring valid proposal of every phrase: scores [B, E, J], boxes [B, J, 4] -> [B, E, 4]."""
    masked = scores.masked_fill(~box_valid[:, None, :], float("-inf"))
    best = masked.argmax(-1)  # [B, E]
    return torch.gather(boxes, 1, best[..., None].expand(-1, -1, 4))

