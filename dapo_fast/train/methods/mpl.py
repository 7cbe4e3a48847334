"""MPL: momentum pseudo-labelling with false-negative handling (Kuang et al., AAAI 2025).

Model: :class:`~dapo_fast.models.proposal_grounder.DualEncoderGrounder` (RoIAlign region features,
optionally through a transformer over the image's regions; a recurrent phrase encoder; score ``<q, k>``).

MPL's region encoder has one transformer layer over the image's regions, on top of a frozen
detector's features. Trained from scratch here, that layer is a shortcut: the loss contrasts a
phrase's own image against the other images, and once every region carries the whole image's
content through attention, any region of the right image satisfies it and nothing has to be
localised (the teacher's pseudo-labels then reinforce whichever region started ahead). Measured
on the val split, mode none, 400 steps, seed 0: 30.2% with the layer, 90.0% without. So
``context_layers`` defaults to 0 (``--set mpl.context_layers=1`` restores MPL's encoder).
A momentum copy of it (the teacher, ``momentum_update_`` with gamma 0.99 after every optimiser
step, initialised equal to the student) gives each phrase pseudo-labels over its own image's
regions at a temperature that decays linearly over the run (MPL's code: 0.3 -> 0.1); the student
learns them with the contrastive loss over every region of the batch
(:func:`~dapo_fast.losses.mpl.mpl_loss`).

False negatives (regions of other images that look like a region of this image) are retrieved by
``false_negative_mask`` with cosine threshold 0.85 (FNE) or 0.95 (FNC). MPL retrieves on the raw
region features of a frozen pretrained detector: meaningful from the first step and untouched by
the loss. The small backbone here trains from scratch, which breaks both. At initialisation its
RoI features are nearly parallel (70-90% of cross-image regions pass 0.95), and features that the
loss trains feed back into the mask: FNC pulls phrases toward the flagged regions, the features
grow alike, more regions are flagged (measured with the live teacher's pooled features: the
flagged share climbs to 65-90% and accuracy falls from 64% to 10-41%). So FNE / FNC start after
``fn_start`` of the run (trained as "none" before), and ``fn_features`` chooses where to retrieve:
``frozen_*`` from a frozen copy of the momentum teacher taken at that moment (a detector trained
first, then frozen, as in the paper), ``teacher_*`` from the live teacher; ``*_region`` on its
output region features, ``*_pooled`` on its RoI-pooled backbone features (MPL's raw features; with
a frozen pretrained backbone, ``model.backbone=open_clip`` and ``freeze_backbone``,
``teacher_pooled`` with ``fn_start: 0`` and ``fn_center: false`` is the paper's setting exactly).
Measured on a model trained without FN handling, the region features are the better retrieval
space (docs/methods.md). Those features share a large common component, so their raw cosines are
near 1 (FNC at phi 0.95 flagged 96% of the cross-image regions, val seed 0); ``fn_center``
retrieves on the features minus the batch's mean valid region instead (4% flagged).
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
from dapo_fast.train.methods.proposals import ProposalMethod, ProposalOptions, pick_boxes, proposal_defaults


FN_FEATURES = ("frozen_region", "frozen_pooled", "teacher_region", "teacher_pooled")


@dataclasses.dataclass
class MPLOptions(ProposalOptions):
    mode: str = dataclasses.field(default="fnc", metadata={"choices": ("none", "fne", "fnc")})  # MPL = FNC
    momentum: float = 0.99  # teacher EMA gamma
    tau: float = 1.0  # student temperature (MPL's code)
    teacher_tau_start: float = 0.3  # pseudo-label temperature, linear over the run (MPL's code on Flickr30k)
    teacher_tau_end: float = 0.1
    fne_threshold: float = 0.85  # cosine threshold phi for FNE
    fnc_threshold: float = 0.95  # and for FNC
    # region features the false negatives are retrieved on: "<source>_<layer>" (see the module docstring)
    fn_features: str = dataclasses.field(default="frozen_region", metadata={"choices": FN_FEATURES})
    fn_start: float = 0.3  # share of the run before FNE / FNC act (0 with a frozen pretrained backbone)
    fn_center: bool = True  # retrieve on features minus the batch's mean region (see the module docstring)
    # transformer layers over the regions of an image (MPL: 1); 0 here, see the module docstring
    context_layers: int = 0


class MPL(ProposalMethod):
    NAME = "mpl"
    Options = MPLOptions
    DEFAULTS = proposal_defaults("mpl")
    # MPL's Table 3 rows with the momentum teacher: no false-negative handling, FNE, FNC
    ABLATION = {"none": ["mpl.mode=none"], "fne": ["mpl.mode=fne"], "fnc": ["mpl.mode=fnc"]}
    COLUMNS = proposal_eval.columns({"FN %": "false_negatives"})

    def __init__(self, cfg, train_set, tokenizer, dist):
        self.teacher_tau = torch.tensor(cfg.options.teacher_tau_start, dtype=torch.float64)
        self.teacher = self.detector = None
        super().__init__(cfg, train_set, tokenizer, dist)
        self.teacher = copy.deepcopy(self.model).requires_grad_(False)
        self.update_schedule()

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
        if o.context_layers < 0:
            raise ConfigError(f"config key 'mpl.context_layers' must be >= 0, got {o.context_layers}")
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

    def fn_features(self, batch, teacher: Dict[str, torch.Tensor]) -> torch.Tensor:
        """The region features false negatives are retrieved on (see the module docstring),
        centred on the batch's mean valid region when ``fn_center``."""
        source, layer = self.options.fn_features.split("_")
        if source == "frozen" and self.detector is not None:
            with torch.no_grad():
                features = self._run(self.detector, batch)[layer]
        else:
            features = teacher[layer]
        if self.options.fn_center:
            valid = batch["box_valid"][..., None].to(features.dtype)
            mean = (features.detach() * valid).sum((0, 1)) / valid.sum().clamp(min=1)
            features = features - mean
        return features

    def forward_loss(self, net, batch, sreg, gamma):
        o = self.options
        student = self._run(net, batch)
        with torch.no_grad():
            teacher = self._run(self.teacher, batch)
        threshold = o.fne_threshold if o.mode == "fne" else o.fnc_threshold
        fn_features = self.fn_features(batch, teacher) if self.fn_mode != "none" else teacher["pooled"]
        parts = mpl_loss(student, teacher, fn_features, batch["entity_valid"], batch["box_valid"], mode=self.fn_mode,
                         threshold=threshold, tau=o.tau, teacher_tau=self.teacher_tau.to(student["phrase"].dtype),
                         code_form=o.code_form)
        parts["teacher_tau"] = self.teacher_tau.detach().clone()
        return parts

    def after_optimizer_step(self, step: int) -> None:
        momentum_update_(self.teacher, self.model, self.options.momentum)
        super().after_optimizer_step(step)

    def update_schedule(self) -> None:
        o = self.options
        self.fn_mode = o.mode if self.progress() >= o.fn_start else "none"
        self.teacher_tau.fill_(o.teacher_tau_start + (o.teacher_tau_end - o.teacher_tau_start) * self.progress())
        if (o.fn_features.startswith("frozen") and self.fn_mode != "none" and self.detector is None
                and self.teacher is not None):  # the "detector": the teacher when FN handling starts, frozen
            self.detector = copy.deepcopy(self.teacher).requires_grad_(False)

    def state_dict(self) -> Dict:
        state = dict(super().state_dict(), teacher=self.teacher.state_dict())
        if self.detector is not None:
            state["detector"] = self.detector.state_dict()
        return state

    def load_state_dict(self, state: Dict) -> None:
        if "teacher" in state:
            self.teacher.load_state_dict(state["teacher"])
        else:  # a checkpoint without the teacher (e.g. weights only): restart it from the student
            self.teacher.load_state_dict(self.model.state_dict())
        self.detector = None
        if "detector" in state:
            self.detector = copy.deepcopy(self.teacher).requires_grad_(False)
            self.detector.load_state_dict(state["detector"])
        super().load_state_dict(state)  # the step, then the schedule (a detector not in the state is taken later)

    @torch.no_grad()
    def predict(self, batch: Dict) -> Dict[str, torch.Tensor]:
        scores = self._run(self.model, batch)["scores"]
        return {"box": pick_boxes(scores, batch["boxes"], batch["box_valid"])}

    def extra_metrics(self, dataset, limit=None) -> Dict[str, float]:
        return {"false_negatives": self.false_negative_share(dataset, limit)}

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
        parts = mpl_loss(teacher, teacher, self.fn_features(batch, teacher), batch["entity_valid"], batch["box_valid"],
                         mode=mode, threshold=threshold)
        return 100.0 * float(parts["false_negatives"])


METHOD = MPL
