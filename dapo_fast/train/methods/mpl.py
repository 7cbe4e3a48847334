"""MPL: momentum pseudo-labelling with false-negative handling (Kuang et al., AAAI 2025).

Model: :class:`~dapo_fast.models.proposal_grounder.DualEncoderGrounder` (RoIAlign region features
through a transformer over the image's regions; a recurrent phrase encoder; score ``<q, k>``).
A momentum copy of it (the teacher, ``momentum_update_`` with gamma 0.99 after every optimiser
step, initialised equal to the student) gives each phrase pseudo-labels over its own image's
regions at a temperature that decays linearly over the run (MPL's code: 0.3 -> 0.1); the student
learns them with the contrastive loss over every region of the batch
(:func:`~dapo_fast.losses.mpl.mpl_loss`).

False negatives (regions of other images that look like a region of this image) are retrieved by
``false_negative_mask`` with cosine threshold 0.85 (FNE) or 0.95 (FNC). MPL computes them on the
frozen detector's raw region features. This model has no frozen detector (the small backbone trains
from scratch), so ``fn_features="pooled"`` uses the momentum teacher's RoI-pooled backbone features:
the same kind of feature (appearance before any matching head), slowly moving and without gradient.
With a frozen pretrained backbone (``model.backbone=open_clip``, ``freeze_backbone``) the teacher's
pooled features are exactly the frozen backbone's, as in the paper. ``"region"`` uses the teacher's
output region features instead.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Dict

import torch

from dapo_fast.eval import proposals as proposal_eval
from dapo_fast.losses.mpl import mpl_loss
from dapo_fast.models.proposal_grounder import DualEncoderGrounder, build_encoders
from dapo_fast.ops import momentum_update_
from dapo_fast.train.methods.proposals import SHARED_DEFAULTS, ProposalMethod, ProposalOptions, pick_boxes


@dataclasses.dataclass
class MPLOptions(ProposalOptions):
    mode: str = dataclasses.field(default="fnc", metadata={"choices": ("none", "fne", "fnc")})  # MPL = FNC
    momentum: float = 0.99  # teacher EMA gamma
    tau: float = 1.0  # student temperature (MPL's code)
    teacher_tau_start: float = 0.3  # pseudo-label temperature, linear over the run (MPL's code on Flickr30k)
    teacher_tau_end: float = 0.1
    fne_threshold: float = 0.85  # cosine threshold phi for FNE
    fnc_threshold: float = 0.95  # and for FNC
    fn_features: str = dataclasses.field(default="pooled", metadata={"choices": ("pooled", "region")})
    fn_start: float = 0.3  # share of the run before FNE / FNC act (0 with a frozen pretrained backbone)
    context_layers: int = 1  # transformer layers over the regions of an image


class MPL(ProposalMethod):
    NAME = "mpl"
    Options = MPLOptions
    DEFAULTS = {**SHARED_DEFAULTS, "train": {**SHARED_DEFAULTS["train"], "out_dir": "runs/mpl", "max_steps": 1000},
                "optim": {"lr": 0.001}}
    # MPL's Table 3 rows with the momentum teacher: no false-negative handling, FNE, FNC
    ABLATION = {"none": ["mpl.mode=none"], "fne": ["mpl.mode=fne"], "fnc": ["mpl.mode=fnc"]}
    COLUMNS = proposal_eval.columns({"FN %": "false_negatives"})

    def __init__(self, cfg, train_set, tokenizer, dist):
        super().__init__(cfg, train_set, tokenizer, dist)
        self.teacher = copy.deepcopy(self.model).requires_grad_(False)
        self.teacher_tau = torch.tensor(self.options.teacher_tau_start, dtype=torch.float64)
        self.last_false_negatives = float("nan")

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        from dapo_fast.train.config import ConfigError

        o = cfg.options
        if not 0.0 <= o.momentum <= 1.0:
            raise ConfigError(f"config key 'mpl.momentum' must be in [0, 1], got {o.momentum}")
        for key in ("tau", "teacher_tau_start", "teacher_tau_end"):
            if not getattr(o, key) > 0:
                raise ConfigError(f"config key 'mpl.{key}' must be > 0, got {getattr(o, key)}")
        if not 0.0 <= o.fn_start <= 1.0:
            raise ConfigError(f"config key 'mpl.fn_start' must be a share of the run in [0, 1], got {o.fn_start}")
        for key in ("fne_threshold", "fnc_threshold"):
            if not -1.0 <= getattr(o, key) <= 1.0:
                raise ConfigError(f"config key 'mpl.{key}' must be a cosine in [-1, 1], got {getattr(o, key)}")

    def build_model(self) -> torch.nn.Module:
        o = self.options
        regions, phrases = build_encoders(self.cfg.model, self.vocab_size, o.pool_size, o.head_hidden)
        model = DualEncoderGrounder(regions, phrases, self.cfg.model.dim, o.context_layers)
        model.regions.per_image_rois = o.code_form
        return model

    def _run(self, net, batch):
        return net(batch["images"], batch["boxes"], batch["box_valid"], batch["phrase_tokens"])

    def forward_loss(self, net, batch, sreg, gamma):
        o = self.options
        student = self._run(net, batch)
        with torch.no_grad():
            teacher = self._run(self.teacher, batch)
        threshold = o.fne_threshold if o.mode == "fne" else o.fnc_threshold
        mode = o.mode if self.progress() >= o.fn_start else "none"
        parts = mpl_loss(student, teacher, teacher[o.fn_features], batch["entity_valid"], batch["box_valid"],
                         mode=mode, threshold=threshold, tau=o.tau,
                         teacher_tau=self.teacher_tau.to(student["phrase"].dtype), code_form=o.code_form)
        parts["teacher_tau"] = self.teacher_tau.detach().clone()
        return parts

    def after_optimizer_step(self, step: int) -> None:
        super().after_optimizer_step(step)
        o = self.options
        momentum_update_(self.teacher, self.model, o.momentum)
        self.teacher_tau.fill_(o.teacher_tau_start + (o.teacher_tau_end - o.teacher_tau_start) * self.progress())

    def state_dict(self) -> Dict:
        return dict(super().state_dict(), teacher=self.teacher.state_dict())

    def load_state_dict(self, state: Dict) -> None:
        super().load_state_dict(state)
        if "teacher" in state:
            self.teacher.load_state_dict(state["teacher"])
        else:  # a checkpoint without the teacher (e.g. weights only): restart it from the student
            self.teacher.load_state_dict(self.model.state_dict())
        o = self.options
        self.teacher_tau.fill_(o.teacher_tau_start + (o.teacher_tau_end - o.teacher_tau_start) * self.progress())

    @torch.no_grad()
    def predict(self, batch: Dict) -> Dict[str, torch.Tensor]:
        scores = self._run(self.model, batch)["scores"]
        return {"box": pick_boxes(scores, batch["boxes"], batch["box_valid"])}

    def evaluate(self, dataset, limit=None, png=None) -> Dict:
        res = super().evaluate(dataset, limit, png)
        res["false_negatives"] = self.false_negative_share(dataset, limit)
        return res

    @torch.no_grad()
    def false_negative_share(self, dataset, limit=None, batch_size: int = 64) -> float:
        """Share (%) of cross-image regions the mask flags on the first batch of ``dataset``, with
        the teacher's features: how much of the batch FNE / FNC act on at this threshold."""
        o = self.options
        n = min(batch_size, len(dataset) if limit is None else min(limit, len(dataset)))
        batch = self.collate([dataset[i] for i in range(n)])
        teacher = self._run(self.teacher, batch)
        threshold = o.fne_threshold if o.mode == "fne" else o.fnc_threshold
        mode = o.mode if o.mode != "none" else "fnc"
        parts = mpl_loss(teacher, teacher, teacher[o.fn_features], batch["entity_valid"], batch["box_valid"],
                         mode=mode, threshold=threshold)
        return 100.0 * float(parts["false_negatives"])


METHOD = MPL
