"""ReIR: relation-aware instance refinement (Liu et al., ICCV 2021), coarse-to-fine with
self-taught box regression.

Model: :class:`~dapo_fast.models.refinement_grounder.RefinementGrounder`. Loss:
:func:`~dapo_fast.losses.reir.reir_loss` (phrase reconstruction + image-caption ranking, and the
self-taught regression from ``reg_start`` of the run on; ReIR switches it on after 7.5k of its 80k
iterations, the same share of this budget by default). Evaluation: accuracy@0.5 of the refined
top-1 box, and of the proposal it was refined from ("Acc unrefined").

Ablation (ReIR's Table 2 rows that this network has): ``coarse`` (the baseline: coarse matching
only, no regression), ``two-stage`` (top-K refinement and fine matching, no regression), ``full``
(two-stage + self-taught regression).
"""
from __future__ import annotations

import dataclasses
from typing import Dict

import torch

from dapo_fast.eval import proposals as proposal_eval
from dapo_fast.losses.reir import reir_loss
from dapo_fast.models.proposal_grounder import build_encoders
from dapo_fast.models.refinement_grounder import RefinementGrounder
from dapo_fast.ops import box_decode
from dapo_fast.train.methods.proposals import ProposalMethod, ProposalOptions, proposal_defaults


@dataclasses.dataclass
class ReIROptions(ProposalOptions):
    top_k: int = 5  # proposals kept per phrase by coarse matching (ReIR: K = 5 of M = 50)
    refine: bool = True  # two-stage: refine the top K, RoIAlign them again, fine matching, fused score
    self_taught: bool = True  # self-taught regression of the offsets (off: offsets stay 0)
    reg_start: float = 0.094  # share of the run before the regression loss starts (ReIR: 7.5k of 80k)
    reg_weight: float = 0.1  # lambda_1
    rank_weight: float = 1.0  # lambda_3
    rank_margin: float = 0.2
    iou_threshold: float = 0.6  # tau of the self-taught targets (ReIR paper; its repo config: 0.7)
    score_gap: float = 0.1  # the pseudo box must beat a regressed box by this confidence (ReIR's code)
    pseudo_box: bool = True  # the pseudo box itself regresses to zero offset (eq. 15; ReIR's code: not)
    scale: float = 10.0  # cosine -> attention logits


class ReIR(ProposalMethod):
    NAME = "reir"
    Options = ReIROptions
    DEFAULTS = proposal_defaults("reir")
    ABLATION = {
        "coarse": ["reir.refine=false", "reir.self_taught=false"],
        "two-stage": ["reir.refine=true", "reir.self_taught=false"],
        "two-stage+STR": ["reir.refine=true", "reir.self_taught=true"],
    }
    COLUMNS = proposal_eval.columns({"Acc unrefined": "acc_proposal", "mIoU unrefined": "miou_proposal"})

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        from dapo_fast.train.config import ConfigError

        o = cfg.options
        if o.top_k < 1:
            raise ConfigError(f"config key 'reir.top_k' must be >= 1, got {o.top_k}")
        if not 0.0 <= o.reg_start <= 1.0:
            raise ConfigError(f"config key 'reir.reg_start' must be a share of the run in [0, 1], got {o.reg_start}")
        if not 0.0 <= o.iou_threshold <= 1.0:
            raise ConfigError(f"config key 'reir.iou_threshold' must be in [0, 1], got {o.iou_threshold}")
        if not o.scale > 0:
            raise ConfigError(f"config key 'reir.scale' must be > 0, got {o.scale}")

    def build_model(self) -> torch.nn.Module:
        o = self.options
        regions, phrases = build_encoders(self.cfg.model, self.vocab_size, o.pool_size, o.head_hidden)
        vocab = self.vocab_size or phrases.embed.num_embeddings
        model = RefinementGrounder(regions, phrases, self.cfg.model.dim, vocab, o.top_k, o.refine, o.head_hidden,
                                   o.scale)
        model.regions.per_image_rois = o.code_form
        return model

    def _run(self, net, batch):
        return net(batch["images"], batch["boxes"], batch["box_valid"], batch["phrase_tokens"])

    def update_schedule(self) -> None:
        self.regressing = self.options.self_taught and self.progress() >= self.options.reg_start

    def forward_loss(self, net, batch, sreg, gamma):
        o = self.options
        out = self._run(net, batch)
        return reir_loss(out, batch, self.regressing, o.scale, o.reg_weight, o.rank_weight, o.rank_margin,
                         o.iou_threshold, o.score_gap, o.pseudo_box, o.code_form)

    @torch.no_grad()
    def predict(self, batch: Dict) -> Dict[str, torch.Tensor]:
        out = self._run(self.model, batch)
        if "fused" in out:
            best = out["fused"].argmax(-1)                                            # [B, E]
            start, offsets = _take(out["refined"], best), _take(out["fine_offsets"], best)
            proposal = _take(out["top_boxes"], best)
        else:
            best = out["coarse_scores"].argmax(-1)                                    # [B, E]
            proposal = start = torch.gather(batch["boxes"], 1, best[..., None].expand(-1, -1, 4))
            offsets = _take(out["coarse_offsets"], best)
        box = box_decode(offsets, start) if self.options.self_taught else start
        return {"box": box, "proposal": proposal}


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x [B, E, K, 4], index [B, E] -> x[b, e, index[b, e]] as [B, E, 4]."""
    return torch.gather(x, 2, index[..., None, None].expand(-1, -1, 1, 4))[:, :, 0]

METHOD = ReIR
