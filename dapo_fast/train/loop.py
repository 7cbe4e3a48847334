"""The training loop: one loop for the task loss, the DAPO curriculum, L_D, checkpoints and DDP.

Determinism contract: given the config, the sequence of batches, the self-paced weights and every
random draw is a function of (seed, step), and a checkpoint stores all state that is not. So a run
stopped at step k and resumed from its checkpoint ends bit-for-bit where an uninterrupted run ends.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import sys
import time
from typing import Callable, Dict, Optional

import numpy as np
import torch

from dapo_fast.data import all_phrases, build_splits, collate_train
from dapo_fast.data.sample import WordTokenizer
from dapo_fast.losses.grounding import dapo_loss
from dapo_fast.models.heatmap_grounder import build_model
from dapo_fast.train import distributed as D
from dapo_fast.train.checkpoint import (CheckpointError, load_checkpoint, rng_state, save_checkpoint,
                                        set_rng_state)
from dapo_fast.train.config import Config, config_from_dict, config_to_dict
from dapo_fast.train.curriculum import Curriculum, open_clip_semantic_scores, own_semantic_scores

SCORE_BATCH = 256


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_optimizer(cfg: Config, model: torch.nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    o = cfg.optim
    if o.name == "sgd":
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    else:
        opt = torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    total, warm = cfg.train.max_steps, o.warmup_steps

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if o.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def make_tokenizer(cfg: Config, train_set):
    if cfg.model.backbone == "open_clip":
        from dapo_fast.models.backbones import OpenClipTokenizer

        return OpenClipTokenizer(cfg.model.open_clip_model)
    return WordTokenizer.build(all_phrases(train_set))


def tokenizer_from_state(cfg: Config, state):
    if cfg.model.backbone == "open_clip":
        from dapo_fast.models.backbones import OpenClipTokenizer

        return OpenClipTokenizer(cfg.model.open_clip_model)
    return WordTokenizer.from_state_dict(state)


def make_encoder(cfg: Config, tokenizer) -> Callable[[str], torch.Tensor]:
    length = cfg.model.phrase_len
    return lambda text: tokenizer.encode(text, length)


def entity_table(dataset, max_entities: int) -> torch.Tensor:
    """[N, E] bool: which entity slots of every training sample are real."""
    phrases = dataset.phrases if hasattr(dataset, "phrases") else [s["phrases"] for s in dataset]
    out = torch.zeros(len(phrases), max_entities, dtype=torch.bool)
    for i, ps in enumerate(phrases):
        out[i, : min(len(ps), max_entities)] = True
    return out


def object_counts(dataset) -> torch.Tensor:
    if hasattr(dataset, "num_objects") and isinstance(dataset.num_objects, torch.Tensor):
        return dataset.num_objects.clone()
    return torch.tensor([s["num_objects"] for s in dataset], dtype=torch.long)


class MetricsLog:
    """JSONL (always) + TensorBoard (when installed) on the main rank."""

    def __init__(self, out_dir: str, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.tb = None
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        if resume_step and os.path.exists(self.path):  # drop lines the interrupted run wrote after its checkpoint
            with open(self.path) as f:
                keep = [line for line in f if json.loads(line).get("step", 0) <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(keep)
        elif os.path.exists(self.path):
            os.unlink(self.path)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(os.path.join(out_dir, "tb"))
        except Exception:  # tensorboard not installed
            self.tb = None

    def write(self, record: Dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _score_batches(dataset, encode, cfg: Config):
    n = len(dataset)
    for i0 in range(0, n, SCORE_BATCH):
        samples = [dataset[i] for i in range(i0, min(n, i0 + SCORE_BATCH))]
        yield collate_train(samples, encode, cfg.data.image_size, cfg.data.max_entities)


def _semantic_scores(cfg: Config, cur: Curriculum, model, train_set, encode) -> torch.Tensor:
    if cur.uses_open_clip():
        if not cfg.curriculum.scorer_pretrained:
            raise ValueError("curriculum.scorer='open_clip' needs curriculum.scorer_pretrained (a local weights file)")

        def samples_iter():
            for i0 in range(0, len(train_set), SCORE_BATCH):
                yield [train_set[i] for i in range(i0, min(len(train_set), i0 + SCORE_BATCH))]

        return open_clip_semantic_scores(cfg.curriculum.scorer_model, cfg.curriculum.scorer_pretrained,
                                         samples_iter(), cfg.data.max_entities)
    return own_semantic_scores(model, _score_batches(train_set, encode, cfg))


def _check_resume_config(saved: Dict, cfg: Config, path: str) -> None:
    """A checkpoint may only continue the same run (train.stop_after/progress/out_dir may differ)."""
    now = config_to_dict(cfg)
    for section in ("data", "model", "optim", "loss", "curriculum"):
        if saved.get(section) != now[section]:
            raise CheckpointError(f"checkpoint {path} was written with a different '{section}' config; "
                                  f"resume needs the same config (saved: {saved.get(section)}, now: {now[section]})")
    for key in ("seed", "batch_size", "max_steps"):
        if saved["train"].get(key) != now["train"][key]:
            raise CheckpointError(f"checkpoint {path}: train.{key} differs ({saved['train'].get(key)} vs {now['train'][key]})")


def train(cfg: Config, resume: Optional[str] = None, log: Callable[[str], None] = print) -> Dict:
    """Run (or continue) training; returns {"step", "checkpoint", "out_dir", "interrupted", "seconds"}."""
    t0 = time.time()
    dist = D.init_from_env()
    tc = cfg.train
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    if tc.batch_size % dist.world_size:
        raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by the {dist.world_size} DDP ranks")
    local_bs = tc.batch_size // dist.world_size
    seed_everything(tc.seed)

    # the main rank generates the synthetic benchmark (cached on disk) before the others read it
    if dist.is_main:
        splits = build_splits(cfg.data)
    D.barrier()
    if not dist.is_main:
        splits = build_splits(cfg.data)
    train_set = splits["train"]

    state = load_checkpoint(resume) if resume else None
    if state is not None:
        _check_resume_config(state["config"], cfg, resume)
    tokenizer = tokenizer_from_state(cfg, state["tokenizer"]) if state else make_tokenizer(cfg, train_set)
    encode = make_encoder(cfg, tokenizer)
    model, _ = build_model(cfg.model, len(tokenizer) if isinstance(tokenizer, WordTokenizer) else 0)
    opt, sched = build_optimizer(cfg, model)
    cur = Curriculum(cfg.curriculum, object_counts(train_set), entity_table(train_set, cfg.data.max_entities),
                     tc.batch_size, tc.max_steps, tc.seed)
    step = 0
    if state is not None:
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            cur.load_state_dict(state["curriculum"])
            set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {resume} does not match this model/config: {err}") from None
        step = int(state["step"])
        log(f"resumed from {resume} at step {step}")

    net = model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model)

    lc = cfg.loss

    def forward_loss(batch, sreg, gamma):
        out = net(batch["images"], batch["phrase_tokens"], batch["entity_valid"])
        return dapo_loss(out, batch, sreg=sreg, gamma=gamma, tau=lc.tau, w_fg=lc.w_fg, w_bg=lc.w_bg,
                         w_area=lc.w_area, w_peak=lc.w_peak, bg_power=lc.bg_power, gather=D.all_gather_with_grad, rank_offset=dist.rank * local_bs,
                         world_size=dist.world_size, normalise_self_paced=lc.normalise_self_paced)

    step_fn = torch.compile(forward_loss, dynamic=False) if tc.compile else forward_loss
    has_attn = hasattr(train_set, "__getitem__") and getattr(train_set, "has_attention", False)
    attn_size = cfg.data.image_size // model.stride if has_attn else None

    metrics = MetricsLog(tc.out_dir, dist.is_main, step if state else 0)
    ckpt_path = os.path.join(tc.out_dir, "last.pt")

    def checkpoint() -> None:
        if dist.is_main:
            save_checkpoint(ckpt_path, dict(
                model=model.state_dict(), optimizer=opt.state_dict(), scheduler=sched.state_dict(),
                curriculum=cur.state_dict(), rng=rng_state(), step=step, config=config_to_dict(cfg),
                tokenizer=tokenizer.state_dict(), world_size=dist.world_size))
        D.barrier()

    try:
        from tqdm import tqdm

        bar = tqdm(total=tc.max_steps, initial=step, disable=not (tc.progress and dist.is_main),
                   mininterval=2.0, dynamic_ncols=True, file=sys.stderr)
    except ImportError:  # pragma: no cover
        bar = None
    interrupted = False
    model.train()
    while step < tc.max_steps:
        if cur.needs_scores(step):
            cur.set_scores(_semantic_scores(cfg, cur, model, train_set, encode), step)
            log(f"step {step}: semantic scores (ScoreS) computed for {len(train_set)} samples")
        idx = cur.next_indices()
        local = idx[dist.rank * local_bs:(dist.rank + 1) * local_bs]
        batch = collate_train([train_set[int(i)] for i in local], encode, cfg.data.image_size,
                              cfg.data.max_entities, attn_size)
        sreg = cur.sreg_for(local)
        gamma = torch.tensor(cur.gamma(step))
        parts = step_fn(batch, sreg, gamma)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        sched.step()
        step += 1
        if bar is not None:
            bar.update(1)
        if step % tc.log_every == 0 or step == tc.max_steps:
            rec = {k: float(D.all_reduce_mean(v.detach())) for k, v in parts.items()}
            rec["loss"] = rec["loss"] / dist.world_size  # undo the DDP scaling for display
            rec.update(step=step, lr=sched.get_last_lr()[0], gamma=float(gamma), stage=cur.stage,
                       pool=len(cur.pool()), elapsed=round(time.time() - t0, 2))
            metrics.write(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{rec['loss']:.3f}", stage=cur.stage)
        if tc.ckpt_every and step % tc.ckpt_every == 0 and step < tc.max_steps:
            checkpoint()
        if tc.stop_after and step >= tc.stop_after and step < tc.max_steps:
            interrupted = True
            break
    checkpoint()
    if bar is not None:
        bar.close()
    metrics.close()
    return dict(step=step, checkpoint=ckpt_path, out_dir=tc.out_dir, interrupted=interrupted,
                seconds=time.time() - t0, world_size=dist.world_size)


def load_trained(path: str):
    """(model in eval mode, encode fn, Config, checkpoint dict) from a checkpoint path or run directory."""
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"])
    tokenizer = tokenizer_from_state(cfg, state.get("tokenizer"))
    model, _ = build_model(cfg.model, len(tokenizer) if isinstance(tokenizer, WordTokenizer) else 0)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path}: model weights do not fit the saved config: {err}") from None
    model.eval()
    return model, make_encoder(cfg, tokenizer), cfg, state
