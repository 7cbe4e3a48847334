"""PCNet: weakly supervised referring segmentation by progressive comprehension, a plug-in of the
one training loop (``dapo-fast train --method pcnet``; ``--method tris`` is its one-stage,
L_cls-only baseline in :mod:`dapo_fast.train.methods.tris`).

Model: :class:`~dapo_fast.models.refseg.ReferringSegmenter` (N CRM stages, one cue per stage).
Supervision: image-text pairs only. L_cls (TRIS) contrasts each image with its own expressions
(positives) and the batch's other images' expressions (negatives), at every stage; RaS and IaD
(:mod:`dapo_fast.losses.pcnet`) use the images' class-agnostic mask proposals (a segmenter's
output, not ground truth). Total loss: w_cls * L_cls + w_ras * L_RaS + w_iad * L_IaD (PCNet: all 1).

Texts: every entity of a sample is one referring expression with its N cues
(:mod:`dapo_fast.data.cues`: built from the synthetic captions' grammar, or looked up in a
``pcnet.cues`` JSONL for real data). IaD pairs each expression with another expression of the same
image (N_d = 1, PCNet's default), cyclically over the image's expressions.

Evaluation (:mod:`dapo_fast.eval.segmentation`): the last stage's response map of each expression
on its image against the target's ground-truth mask: PointM (both resize rules), mIoU, oIoU,
overall and per object-count subset; ``--png``: every stage's map of a few expressions.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from dapo_fast.data.cues import fit_cues, load_cues, normalise, synthetic_references
from dapo_fast.data.sample import WordTokenizer, load_image, prepare_images
from dapo_fast.eval.segmentation import SUBSET_NAMES, mask_scores, save_response_grid, summarise
from dapo_fast.losses.pcnet import FORMS, classification_loss, instance_disambiguation_loss, region_shrinking_loss
from dapo_fast.models.refseg import build_refseg_model
from dapo_fast.ops import BACKENDS
from dapo_fast.train.config import ConfigError, evaluation_option
from dapo_fast.train.methods.base import Method

EVAL_BATCH = 64


def shared_defaults(out_dir: str, compile_step: bool) -> Dict:
    """The shared sections' defaults of PCNet and TRIS: uniform batches (no curriculum), whole
    referring expressions as texts, the synthetic benchmark's CPU budget, and whether the step is
    compiled (the faster choice over the default run, measured by benchmarks/compile_train_step.py)."""
    return {"curriculum": {"score_q": False, "score_s": False},
            # whole referring expressions as texts; response maps at stride 4, the setting PCNet and
            # TRIS were measured with here (the grounder's default is stride 2)
            "model": {"phrase_len": 16, "stride": 4, "decoder_pool": 1},
            "train": {"batch_size": 32, "max_steps": 1000, "out_dir": out_dir, "compile": compile_step}}


@dataclasses.dataclass
class PCNetOptions:
    stages: int = 3  # N: CRM stages, one cue each (PCNet's default)
    use_cues: bool = True  # False: no referring modulation, every stage keeps the expression's embedding
    w_cls: float = 1.0
    w_ras: float = 1.0
    w_iad: float = 1.0
    warmup_steps: int = 0  # L_cls alone for this many steps, then RaS and IaD join (0: from the start)
    ras_form: str = dataclasses.field(default="paper", metadata={"choices": FORMS})  # losses.pcnet
    iad_form: str = dataclasses.field(default="paper", metadata={"choices": FORMS})
    iou_variant: str = dataclasses.field(default="iou", metadata={"choices": ("iou", "half_dice")})  # paper-form RaS
    cues: Optional[str] = None  # JSONL of cues per expression (data/cues.py); the synthetic data has its own
    mask_threshold: float = evaluation_option(0.0)  # evaluation: mask = response > threshold * peak (0: TRIS/PCNet, any positive)
    backend: str = dataclasses.field(default="auto", metadata={"choices": BACKENDS})  # of the ops in the losses


def _columns():
    return ([("PointM", "pointm"), ("PointM ac", "pointm_align_corners"), ("mIoU", "miou"), ("oIoU", "oiou")]
            + [(f"PointM {s}", f"subsets.{s}.pointm") for s in SUBSET_NAMES]
            + [(f"mIoU {s}", f"subsets.{s}.miou") for s in SUBSET_NAMES])


class ReferringSegmentation(Method):
    """What PCNet and TRIS share: texts and cues, batches, L_cls, evaluation."""

    COLUMNS = _columns()

    # the method's structure, from its options (PCNet) or fixed (TRIS)
    @classmethod
    def stage_count(cls, options) -> int:
        raise NotImplementedError

    @classmethod
    def cue_use(cls, options) -> bool:
        raise NotImplementedError

    @classmethod
    def proposal_use(cls, options) -> bool:
        raise NotImplementedError

    def num_stages(self) -> int:
        return self.stage_count(self.options)

    def uses_cues(self) -> bool:
        return self.cue_use(self.options)

    def needs_proposals(self) -> bool:
        return self.proposal_use(self.options)

    def __init__(self, cfg, train_set, tokenizer, dist):
        with_cues = self.cue_use(cfg.options)
        self.cue_table = load_cues(cfg.options.cues) if with_cues and cfg.options.cues else None
        super().__init__(cfg, train_set, tokenizer, dist)

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        if cfg.curriculum.score_q:
            raise ConfigError(f"config key 'curriculum.score_q' must be false for method '{cls.NAME}' "
                              f"(its batches are not drawn per object count)")
        if not 0.0 <= cfg.options.mask_threshold < 1.0:
            raise ConfigError(f"config key '{cls.NAME}.mask_threshold' must be in [0, 1), "
                              f"got {cfg.options.mask_threshold}")

    @classmethod
    def vocabulary_texts(cls, cfg, train_set):
        """The training expressions, and their cues when the model reads them."""
        with_cues = cls.cue_use(cfg.options)
        table = load_cues(cfg.options.cues) if with_cues and cfg.options.cues else None
        for i in range(len(train_set)):
            for expression, cues in references(train_set[i], cfg.data.kind, table, cls.stage_count(cfg.options),
                                               with_cues):
                yield expression
                yield from cues

    def build_model(self) -> torch.nn.Module:
        vocab = len(self.tokenizer) if isinstance(self.tokenizer, WordTokenizer) else 0
        return build_refseg_model(self.cfg.model, vocab, self.num_stages(), self.uses_cues())

    # ---------------------------------------------------------------- batches
    def texts_of(self, sample: Dict) -> List[Tuple[str, List[str]]]:
        """(expression, cues) of each entity of ``sample`` (at most data.max_entities)."""
        refs = references(sample, self.cfg.data.kind, self.cue_table, self.num_stages(), self.uses_cues())
        return refs[: self.cfg.data.max_entities]

    def collate(self, samples: List[Dict]) -> Dict[str, torch.Tensor]:
        return self._collate(samples, [load_image(s["image"]) for s in samples], self.needs_proposals())

    def _collate(self, samples: List[Dict], images: List[torch.Tensor], with_proposals: bool) -> Dict[str, torch.Tensor]:
        """K = data.max_entities text slots per image (empty slots have text_valid False):
        expr_tokens [B, K, L], cue_tokens [B, K, N, L] (with cues), text_valid [B, K], text_labels
        [B, B*K] (text t = b*K + k belongs to image b), partners [B, K, 1] (another text of the same
        image, -1: none), and with proposals mask_proposals [B, P, m, m], proposal_valid [B, P]."""
        b, k, n = len(samples), self.cfg.data.max_entities, self.num_stages()
        empty = self.encode_phrase("")
        expr = empty.new_zeros(b, k, empty.shape[-1])
        cue_tokens = empty.new_zeros(b, k, n, empty.shape[-1]) if self.uses_cues() else None
        text_valid = torch.zeros(b, k, dtype=torch.bool)
        partners = torch.full((b, k, 1), -1, dtype=torch.long)
        for i, s in enumerate(samples):
            refs = self.texts_of(s)
            for j, (expression, cues) in enumerate(refs):
                expr[i, j] = self.encode_phrase(expression)
                if cue_tokens is not None:
                    cue_tokens[i, j] = torch.stack([self.encode_phrase(c) for c in cues])
                text_valid[i, j] = True
                if len(refs) > 1:
                    partners[i, j, 0] = (j + 1) % len(refs)
        owner = torch.arange(b).repeat_interleave(k)
        batch = dict(images=prepare_images(images, self.cfg.data.image_size), expr_tokens=expr,
                     text_valid=text_valid, text_labels=owner[None, :] == torch.arange(b)[:, None],
                     partners=partners, num_objects=torch.tensor([s["num_objects"] for s in samples]))
        if cue_tokens is not None:
            batch["cue_tokens"] = cue_tokens
        if with_proposals:
            batch.update(collate_mask_proposals(samples))
        return batch

    def classification_part(self, out, batch) -> torch.Tensor:
        """L_cls of every stage: TRIS's pooling y = mean + max of the response logits."""
        return classification_loss(out["scores"], batch["text_labels"], batch["text_valid"].flatten())

    # ---------------------------------------------------------------- evaluation
    @torch.no_grad()
    def predict(self, samples: List[Dict]) -> Dict:
        """Every stage's response map of every expression of ``samples`` on its image, with the
        target's ground-truth mask (evaluation only)."""
        raw = [load_image(s["image"]) for s in samples]
        batch = self._collate(samples, raw, with_proposals=False)
        out = self.model(batch["images"], batch["expr_tokens"], batch.get("cue_tokens"), all_pairs=False)
        own_logits = out["logits"].reshape(out["response"].shape)                    # [N, B, K, h, w]
        maps, logits, masks, counts, images, expressions, cues = [], [], [], [], [], [], []
        for i, s in enumerate(samples):
            if s.get("gt_masks") is None:
                raise ValueError(f"sample {s.get('image_id', i)!r} has no ground-truth masks: referring "
                                 f"segmentation is evaluated against masks")
            for j, (expression, text_cues) in enumerate(self.texts_of(s)):
                maps.append(out["response"][:, i, j])
                logits.append(own_logits[:, i, j])
                masks.append(s["gt_masks"][j])
                counts.append(int(s["num_objects"]))
                images.append(raw[i])
                expressions.append(expression)
                cues.append(text_cues if self.uses_cues() else [expression] * self.num_stages())
        return dict(maps=torch.stack(maps), logits=torch.stack(logits), gt_masks=masks,
                    num_objects=torch.tensor(counts), images=images, expressions=expressions, cues=cues)

    def evaluate(self, dataset, limit: Optional[int] = None, png: Optional[str] = None) -> Dict:
        n = len(dataset) if limit is None else min(limit, len(dataset))
        was_training = self.model.training
        self.model.eval()
        parts, counts = [], []
        try:
            for i0 in range(0, n, EVAL_BATCH):
                p = self.predict([dataset[i] for i in range(i0, min(n, i0 + EVAL_BATCH))])
                response = p["maps"][:, -1]
                # PointM on the response map as PCNet; where it is all zero, on its logits
                blank = response.flatten(1).amax(1) <= 0
                peaks_of = torch.where(blank[:, None, None], p["logits"][:, -1], response)
                parts.append(mask_scores(response, p["gt_masks"], self.options.mask_threshold, peaks_of=peaks_of))
                counts.append(p["num_objects"])
            scores = {k: torch.cat([s[k] for s in parts]) for k in parts[0]}
            res = summarise(scores, torch.cat(counts))
            if png:
                self.save_picture(dataset, png)
                res["png"] = png
        finally:
            self.model.train(was_training)
        return res

    def save_picture(self, dataset, path: str, num_images: int = 6) -> str:
        """Every stage's response map of the expressions of the first images (one row each)."""
        p = self.predict([dataset[i] for i in range(min(num_images, len(dataset)))])
        return save_response_grid(p["images"], p["maps"], p["gt_masks"], p["expressions"], p["cues"], path)

    @staticmethod
    def headline(result: Dict) -> str:
        return (f"PointM {result['pointm']:.1f}% (align_corners=True: {result['pointm_align_corners']:.1f}%), "
                f"mIoU {result['miou']:.1f}%, oIoU {result['oiou']:.1f}% over {result['maps']} expressions")


def references(sample: Dict, data_kind: str, cue_table: Optional[Dict[str, List[str]]], stages: int,
               with_cues: bool) -> List[Tuple[str, List[str]]]:
    """(expression, ``stages`` cues) per entity of a sample: the synthetic grammar's expressions and
    cues, or the sample's phrases with their cues from the cue file (which wins when given).
    Without cues the lists are empty."""
    if data_kind == "synthetic":
        refs = synthetic_references(sample["caption"], sample["phrases"], sample["spans"])
    else:
        refs = [(phrase, []) for phrase in sample["phrases"]]
    if not with_cues:
        return [(expression, []) for expression, _ in refs]
    out = []
    for expression, cues in refs:
        if cue_table is not None:
            cues = cue_table.get(normalise(expression))
            if cues is None:
                raise ValueError(f"the cues file (pcnet.cues) has no line for the expression {expression!r} "
                                 f"(image {sample.get('image_id', '?')!r})")
        if not cues:
            raise ValueError(f"expression {expression!r} has no cues: give a cues file (pcnet.cues / --cues)")
        out.append((expression, fit_cues(cues, stages)))
    return out


def collate_mask_proposals(samples: Sequence[Dict]) -> Dict[str, torch.Tensor]:
    """The samples' class-agnostic mask proposals, padded to the batch's largest count:
    mask_proposals [B, P, m, m] bool, proposal_valid [B, P]."""
    props = []
    for i, s in enumerate(samples):
        m = s.get("mask_proposals")
        if m is None:
            raise ValueError(f"sample {s.get('image_id', i)!r} has no mask proposals, which RaS and IaD need "
                             f"(set their weights to 0 to train on L_cls alone)")
        props.append(torch.as_tensor(m).to(torch.bool))
    sizes = {tuple(m.shape[-2:]) for m in props}
    if len(sizes) != 1:
        raise ValueError(f"mask proposals of one batch must share their size, got {sorted(sizes)}")
    p = max(m.shape[0] for m in props)
    masks = torch.zeros(len(props), p, *props[0].shape[-2:], dtype=torch.bool)
    valid = torch.zeros(len(props), p, dtype=torch.bool)
    for i, m in enumerate(props):
        masks[i, : m.shape[0]] = m
        valid[i, : m.shape[0]] = True
    return dict(mask_proposals=masks, proposal_valid=valid)


class PCNet(ReferringSegmentation):
    NAME = "pcnet"
    Options = PCNetOptions
    # eager: compiled steps are 1.27x faster (1 thread) but the compile (~160 s on the loaded 2-core
    # machine) only pays after ~3000 steps, three times the default run
    DEFAULTS = shared_defaults("runs/pcnet", compile_step=False)
    # PCNet's component table: L_cls alone (TRIS), + CRM (cue stages), + RaS, + IaD, + both
    ABLATION = {
        "TRIS": ["pcnet.stages=1", "pcnet.use_cues=false", "pcnet.w_ras=0", "pcnet.w_iad=0"],
        "+CRM": ["pcnet.w_ras=0", "pcnet.w_iad=0"],
        "+CRM+RaS": ["pcnet.w_iad=0"],
        "+CRM+IaD": ["pcnet.w_ras=0"],
        "+CRM+RaS+IaD": [],
    }

    @classmethod
    def stage_count(cls, options) -> int:
        return options.stages

    @classmethod
    def cue_use(cls, options) -> bool:
        return options.use_cues

    @classmethod
    def proposal_use(cls, options) -> bool:
        return options.w_ras > 0 or options.w_iad > 0

    def __init__(self, cfg, train_set, tokenizer, dist):
        super().__init__(cfg, train_set, tokenizer, dist)
        self.steps_done = 0  # optimiser steps so far (RaS and IaD join after options.warmup_steps)
        self._update_warmup()

    def _update_warmup(self) -> None:
        # forward_loss reads this flag, not the step count: a flag that changes once makes a compiled
        # step recompile once, where a Python int compared in forward_loss recompiles at every step
        self.warming_up = self.steps_done < self.options.warmup_steps

    def after_optimizer_step(self, step: int) -> None:
        self.steps_done = step
        self._update_warmup()

    def state_dict(self):
        return {"steps_done": self.steps_done}

    def load_state_dict(self, state) -> None:
        self.steps_done = int(state.get("steps_done", 0))
        self._update_warmup()

    @classmethod
    def validate_config(cls, cfg) -> None:
        super().validate_config(cfg)
        o = cfg.options
        if o.warmup_steps < 0:
            raise ConfigError(f"config key 'pcnet.warmup_steps' must be >= 0, got {o.warmup_steps}")
        if o.stages < 1:
            raise ConfigError(f"config key 'pcnet.stages' must be >= 1, got {o.stages}")
        for key in ("w_cls", "w_ras", "w_iad"):
            if getattr(o, key) < 0:
                raise ConfigError(f"config key 'pcnet.{key}' must be >= 0, got {getattr(o, key)}")
        if o.w_ras > 0 and o.stages < 2:
            raise ConfigError(f"config key 'pcnet.w_ras' must be 0 with pcnet.stages = {o.stages}: "
                              f"RaS compares consecutive stages")
        if o.use_cues and o.cues is None and cfg.data.kind != "synthetic":
            raise ConfigError(f"config key 'pcnet.cues' must name a JSONL of cues per expression for "
                              f"data.kind = {cfg.data.kind!r} (or set pcnet.use_cues = false)")

    def forward_loss(self, net, batch, sreg, gamma):
        o = self.options
        out = net(batch["images"], batch["expr_tokens"], batch.get("cue_tokens"))
        l_cls = self.classification_part(out, batch)
        # no product by a unit weight: inductor folds 1.0 * l_cls into l_cls, the logged l_cls.detach()
        # then becomes the same output buffer as a loss of L_cls alone, which comes back without its grad_fn
        loss = l_cls if o.w_cls == 1 else o.w_cls * l_cls
        parts = dict(cls=l_cls.detach())
        if not self.needs_proposals() or self.warming_up:
            parts["loss"] = loss
            return parts
        masks, valid = batch["mask_proposals"], batch["proposal_valid"]
        response = out["response"].permute(1, 2, 0, 3, 4)                            # [B, K, N, h, w]
        if response.shape[-2:] != masks.shape[-2:]:
            b, k, n = response.shape[:3]
            response = F.interpolate(response.reshape(b, k * n, *response.shape[-2:]), size=masks.shape[-2:],
                                     mode="bilinear", align_corners=False).reshape(b, k, n, *masks.shape[-2:])
        text_valid = batch["text_valid"]
        scores = None
        if o.w_iad > 0 or o.ras_form == "code":
            partners = torch.where(text_valid[:, :, None], batch["partners"], -1)
            l_iad, scores = instance_disambiguation_loss(response, partners, masks, valid, form=o.iad_form,
                                                         backend=o.backend)
            if o.w_iad > 0:
                loss = loss + o.w_iad * l_iad
                parts["iad"] = l_iad.detach()
        if o.w_ras > 0:
            # without an external (CLIP) proposal score, the code form's foreground is the proposal
            # the last stage aligns best with, shared by all stages
            fg_scores = None if o.ras_form == "paper" else scores[:, :, -1]
            l_ras = region_shrinking_loss(response, masks, valid, weight=text_valid, form=o.ras_form,
                                          variant=o.iou_variant if o.ras_form == "paper" else None,
                                          fg_scores=fg_scores, backend=o.backend)
            loss = loss + o.w_ras * l_ras
            parts["ras"] = l_ras.detach()
        parts["loss"] = loss
        return parts


METHOD = PCNet
