"""DAPO's progressive learning: difficulty scores, the baby-step scheduler, self-paced weights.

* ScoreQ = objects per image; ``subsets`` (default 1-2, 3, 4, 5, 6-8 objects) are the difficulty levels.
* Baby steps: train on the easiest subset; after ``stage_epochs`` epochs over the current pool merge
  the next subset; once all are merged, train on everything until the step budget ends.
* ScoreS = similarity of each image-entity pair from a frozen scorer: open_clip when local weights
  are given, else the model's own heatmap-pooled embedding vs its entity embedding, taken from a
  frozen snapshot after ``warmup_steps``. SREG = ScoreS min-max normalised over the training set.
* Self-paced weights v = clip(SREG - gamma*L, 0, 1) (losses.grounding.self_paced_weights) with gamma
  moving linearly from ``gamma_start`` to ``gamma_end`` (DAPO's implementation decays 0.5 -> 0.1).

Generated images (DAPO's GAT, ``data.generated_root``) are samples like any other: their ScoreQ is
their number of prompted entities, so they join the early subsets. With ``generated_fraction`` set,
every batch takes that share from the pool's generated samples and the rest from its real ones
(two streams, each with its own epochs); without it, the pool is drawn as one, so the share follows
the pool's composition (DAPO's way: generated images fill the few-object subsets).

The batch order is a pure function of (seed, stage, epoch, position), so the state to resume is a
handful of integers plus the SREG table.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

from dapo_fast.train.config import CurriculumConfig


def subset_ids(num_objects: torch.Tensor, subsets: List[List[int]]) -> torch.Tensor:
    """Index of the ScoreQ subset of every sample; counts outside every range go to the nearest one."""
    ids = torch.full_like(num_objects, -1)
    for k, (lo, hi) in enumerate(subsets):
        ids[(num_objects >= lo) & (num_objects <= hi)] = k
    ids[(ids < 0) & (num_objects < subsets[0][0])] = 0
    ids[ids < 0] = len(subsets) - 1
    return ids


def normalise_scores(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """SREG: min-max over the valid entries -> [0, 1]; invalid entries 0."""
    v = scores[valid]
    if v.numel() == 0:
        return torch.zeros_like(scores)
    lo, hi = v.min(), v.max()
    out = (scores - lo) / (hi - lo).clamp_min(1e-8)
    return out.clamp(0, 1) * valid.to(scores.dtype)


@torch.no_grad()
def own_semantic_scores(model: torch.nn.Module, batches) -> torch.Tensor:
    """ScoreS from the model itself: cos(heatmap-pooled pixel embedding, entity embedding) per
    image-entity pair. ``batches`` yields collated training batches in dataset order."""
    out = []
    for batch in batches:
        o = model(batch["images"], batch["phrase_tokens"], batch["entity_valid"])
        M = o["heatmaps"].flatten(2)
        V = o["pixel_embed"].flatten(2)
        fg = torch.einsum("beh,bdh->bed", M, V) / (M.sum(-1, keepdim=True) + 1e-6)
        out.append(F.cosine_similarity(fg, o["text_embed"], dim=-1))
    return torch.cat(out)


@torch.no_grad()
def open_clip_semantic_scores(model_name: str, pretrained: str, samples_iter, max_entities: int) -> torch.Tensor:
    """ScoreS from a frozen open_clip: cos(image embedding, phrase embedding) per image-entity pair."""
    import open_clip

    from dapo_fast.models.backbones import create_open_clip

    clip = create_open_clip(model_name, pretrained).eval()
    tok = open_clip.get_tokenizer(model_name)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    rows = []
    for samples in samples_iter:
        imgs = torch.stack([F.interpolate(s["image"][None].float() / 255, size=(size, size), mode="bilinear",
                                          align_corners=False)[0] for s in samples])
        zi = F.normalize(clip.encode_image((imgs - mean) / std), dim=-1)
        for b, s in enumerate(samples):
            row = torch.zeros(max_entities)
            phrases = s["phrases"][:max_entities]
            if phrases:
                zt = F.normalize(clip.encode_text(tok(phrases)), dim=-1)
                row[: len(phrases)] = zt @ zi[b]
            rows.append(row)
    return torch.stack(rows)


class Curriculum:
    """Which samples the next batch comes from, and the self-paced SREG/gamma for it."""

    def __init__(self, cfg: CurriculumConfig, num_objects: torch.Tensor, entity_valid: torch.Tensor,
                 batch_size: int, max_steps: int, seed: int, generated: Optional[torch.Tensor] = None,
                 generated_fraction: Optional[float] = None):
        self.cfg = cfg
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.seed = seed
        self.entity_valid = entity_valid  # [N, E] bool
        self.ids = subset_ids(num_objects, cfg.subsets)
        self.num_stages = len(cfg.subsets) if cfg.score_q else 1
        self.stage = 1 if cfg.score_q else self.num_stages
        self.generated = generated  # [N] bool or None
        self.generated_fraction = generated_fraction if generated is not None else None
        self.streams = self._fresh_streams()  # stream -> [epoch, position]
        self.steps_in_stage = 0
        self.sreg: Optional[torch.Tensor] = None
        self.scores_from_step = 0

    # ---------------- pool and order
    def pool(self) -> torch.Tensor:
        if not self.cfg.score_q:
            return torch.arange(len(self.ids))
        return torch.nonzero(self.ids < self.stage).flatten()

    def _pool_size_ok(self) -> torch.Tensor:
        pool = self.pool()
        # an early subset can be smaller than a batch: merge subsets until one batch fits
        while len(pool) < self.batch_size and self.stage < self.num_stages:
            self.stage += 1
            pool = self.pool()
        if len(pool) < self.batch_size:
            raise ValueError(f"the training set has {len(pool)} samples, fewer than train.batch_size={self.batch_size}")
        return pool

    def stage_steps(self) -> int:
        return max(1, math.ceil(self.cfg.stage_epochs * len(self.pool()) / self.batch_size))

    def next_indices(self) -> torch.Tensor:
        """The global batch (sample indices) for the next step; advances the state."""
        if self.cfg.score_q and self.stage < self.num_stages and self.steps_in_stage >= self.stage_steps():
            self.stage += 1
            self.streams, self.steps_in_stage = self._fresh_streams(), 0
        pool = self._pool_size_ok()
        if self.generated_fraction is None:
            idx = self._draw("all", pool, self.batch_size)
        else:
            is_generated = self.generated[pool]
            fake, real = pool[is_generated], pool[~is_generated]
            count = min(round(self.generated_fraction * self.batch_size), len(fake))
            if len(real) < self.batch_size - count:
                raise ValueError(f"the pool has {len(real)} real samples, fewer than the {self.batch_size - count} "
                                 f"a batch takes at data.generated_fraction={self.generated_fraction}")
            idx = torch.cat([self._draw("real", real, self.batch_size - count), self._draw("generated", fake, count)])
        self.steps_in_stage += 1
        return idx

    @staticmethod
    def _fresh_streams() -> Dict[str, List[int]]:
        return {"all": [0, 0], "real": [0, 0], "generated": [0, 0]}

    def _draw(self, stream: str, members: torch.Tensor, count: int) -> torch.Tensor:
        """The next ``count`` of ``members`` in the stream's epoch order (a new permutation each
        epoch; an epoch's remainder smaller than ``count`` is skipped)."""
        if count == 0:
            return members[:0]
        epoch, pos = self.streams[stream]
        if pos + count > len(members):
            epoch, pos = epoch + 1, 0
        offset = {"all": 0, "real": 1, "generated": 2}[stream] * 7_919_003
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.stage * 10_007 + epoch + offset)
        perm = members[torch.randperm(len(members), generator=g)]
        self.streams[stream] = [epoch, pos + count]
        return perm[pos:pos + count]

    # ---------------- semantic scores and self-paced weights
    def needs_scores(self, step: int) -> bool:
        return self.cfg.score_s and self.sreg is None and step >= self._score_step()

    def _score_step(self) -> int:
        return 0 if self.uses_open_clip() else self.cfg.warmup_steps

    def uses_open_clip(self) -> bool:
        if self.cfg.scorer == "open_clip":
            return True
        return self.cfg.scorer == "auto" and self.cfg.scorer_pretrained is not None

    def set_scores(self, scores: torch.Tensor, step: int) -> None:
        self.sreg = normalise_scores(scores.float(), self.entity_valid)
        self.scores_from_step = step

    def gamma(self, step: int) -> float:
        c = self.cfg
        if c.gamma_schedule == "constant":
            return c.gamma_start
        span = max(1, self.max_steps - self.scores_from_step)
        frac = min(1.0, max(0.0, (step - self.scores_from_step) / span))
        return c.gamma_start + (c.gamma_end - c.gamma_start) * frac

    def sreg_for(self, idx: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.cfg.score_s or self.sreg is None:
            return None
        return self.sreg[idx]

    # ---------------- checkpointing
    def state_dict(self) -> Dict:
        return dict(stage=self.stage, streams={k: list(v) for k, v in self.streams.items()},
                    steps_in_stage=self.steps_in_stage, sreg=self.sreg, scores_from_step=self.scores_from_step)

    def load_state_dict(self, state: Dict) -> None:
        for k in ("stage", "streams", "steps_in_stage", "sreg", "scores_from_step"):
            setattr(self, k, state[k])

    def describe(self) -> str:
        return f"stage {self.stage}/{self.num_stages} pool {len(self.pool())}"
