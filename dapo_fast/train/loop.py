"""The training loop: one loop for every method (``dapo_fast.train.methods``), the curriculum,
checkpoints, logging and DDP.

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
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dapo_fast.data import build_splits, object_counts, phrase_lists
from dapo_fast.data.sample import WordTokenizer
from dapo_fast.safe_io import FileFormatError, atomic_write, remove_stale_temp_files
from dapo_fast.train import distributed as D
from dapo_fast.train import methods
from dapo_fast.train.checkpoint import (CheckpointError, checkpoint_file, load_checkpoint, rng_state,
                                        save_checkpoint, set_rng_state)
from dapo_fast.train.config import (Config, ConfigError, apply_overrides, config_from_dict, config_to_dict,
                                     evaluation_keys)
from dapo_fast.train.curriculum import Curriculum, open_clip_semantic_scores

SCORE_BATCH = 256
RUN_FILES = ("last.pt", "metrics.jsonl")  # a directory holding either holds a run


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


def make_tokenizer(cfg: Config, train_set=None, state: Optional[Dict] = None):
    """open_clip's BPE for the open_clip backbone; else a word vocabulary, built from the method's
    training texts (``Method.vocabulary_texts``) or restored from a checkpoint (``state``)."""
    if cfg.model.backbone == "open_clip":
        from dapo_fast.models.backbones import OpenClipTokenizer

        return OpenClipTokenizer(cfg.model.open_clip_model)
    if state is not None:
        return WordTokenizer.from_state_dict(state)
    return WordTokenizer.build(methods.get(cfg.method).vocabulary_texts(cfg, train_set))


def check_tokenizer_state(state: Dict, cfg: Config, path: str) -> None:
    """The word tokenizer a checkpoint must carry (open_clip's BPE is rebuilt from the config)."""
    if cfg.model.backbone == "open_clip":
        return
    tok = state.get("tokenizer")
    vocab = tok.get("vocab") if isinstance(tok, dict) else None
    if not (isinstance(vocab, list) and all(isinstance(w, str) for w in vocab)):
        raise CheckpointError(f"checkpoint {path} holds no word tokenizer (a 'tokenizer' dict with a 'vocab' "
                              f"list of strings)")


def entity_table(dataset, max_entities: int) -> torch.Tensor:
    """[N, E] bool: which entity slots of every training sample are real."""
    phrases = phrase_lists(dataset)
    out = torch.zeros(len(phrases), max_entities, dtype=torch.bool)
    for i, ps in enumerate(phrases):
        out[i, : min(len(ps), max_entities)] = True
    return out


def metrics_up_to(path: str, step: int) -> List[bytes]:
    """The lines of a metrics log with records up to ``step`` (what a run resumed from its checkpoint
    at ``step`` keeps). The last line may have been cut short by a kill mid-write: it is dropped;
    any other line that is not a JSON record with an int 'step' raises FileFormatError naming it."""
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")  # the last item is b"" when the file ends with a newline
    keep = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and type(record.get("step")) is int):
            if number == len(lines):  # no newline after it: a write cut short
                continue
            raise FileFormatError(f"metrics log {path} line {number} is not a JSON record with an int 'step'; "
                                  f"repair or remove that line to resume")
        if record["step"] <= step:
            keep.append(line + b"\n")
    return keep


class MetricsLog:
    """JSONL (always) + TensorBoard (when installed) on the main rank. A resumed run keeps the
    records up to its checkpoint and drops the ones the interrupted run wrote after it."""

    def __init__(self, out_dir: str, enabled: bool, resume_step: int):
        self.enabled = enabled
        self.path = os.path.join(out_dir, "metrics.jsonl")
        self.tb = None
        if not enabled:
            return
        os.makedirs(out_dir, exist_ok=True)
        if resume_step and os.path.exists(self.path):
            keep = metrics_up_to(self.path, resume_step)
            atomic_write(self.path, lambda f: f.writelines(keep))
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        # purge_step: TensorBoard drops the interrupted run's events after the checkpoint
        self.tb = SummaryWriter(os.path.join(out_dir, "tb"), purge_step=resume_step + 1 if resume_step else None)

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


def _check_resume_config(saved: Dict, cfg: Config, path: str) -> None:
    """A checkpoint may only continue the same run (train.stop_after/progress/out_dir may differ)."""
    now = config_to_dict(cfg)
    if not isinstance(saved.get("train"), dict):
        raise CheckpointError(f"checkpoint {path} holds a config without a 'train' section")
    if saved.get("method") != now["method"]:
        raise CheckpointError(f"checkpoint {path} was written by method '{saved.get('method')}', "
                              f"this config's method is '{now['method']}'")
    current = dict(data=cfg.data, model=cfg.model, optim=cfg.optim, curriculum=cfg.curriculum)
    current[now["method"]] = cfg.options
    scoring_only = set(evaluation_keys(cfg.options))  # thresholds of the evaluation may differ
    for section, options in current.items():
        saved_section, now_section = _with_new_keys(saved.get(section), options), now[section]
        if section == now["method"] and isinstance(saved_section, dict):
            saved_section, now_section = ({k: v for k, v in d.items() if k not in scoring_only}
                                          for d in (saved_section, now_section))
        if saved_section != now_section:
            raise CheckpointError(f"checkpoint {path} was written with a different '{section}' config; "
                                  f"resume needs the same config (saved: {saved_section}, now: {now_section})")
    for key in ("seed", "batch_size", "max_steps"):
        if saved["train"].get(key) != now["train"][key]:
            raise CheckpointError(f"checkpoint {path}: train.{key} differs ({saved['train'].get(key)} vs {now['train'][key]})")


def _with_new_keys(saved_section, options):
    """A saved config section with the keys added to ``options``' dataclass since the checkpoint
    was written set to their defaults: a newer package continues an older run whose settings it
    reproduces, while a changed or removed key still differs."""
    if not isinstance(saved_section, dict):
        return saved_section
    out = dict(saved_section)
    for field in dataclasses.fields(options):
        if field.name in out:
            continue
        if field.default is not dataclasses.MISSING:
            out[field.name] = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
            out[field.name] = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else default
    return out


def _check_like(fresh, loaded, where: str) -> None:
    """``loaded`` has the structure of ``fresh`` (the state a new run of the same config holds): the
    same keys, leaf types and tensor shapes and dtypes; a None in ``fresh`` admits anything."""
    if fresh is None:
        return
    if isinstance(fresh, dict):
        if not isinstance(loaded, dict) or set(loaded) != set(fresh):
            raise CheckpointError(f"'{where}' must be a dict with the keys {sorted(map(str, fresh))}")
        for key in fresh:
            _check_like(fresh[key], loaded[key], f"{where}.{key}")
        return
    if isinstance(fresh, (list, tuple)):
        if type(loaded) is not type(fresh) or len(loaded) != len(fresh):
            raise CheckpointError(f"'{where}' must be a {type(fresh).__name__} of {len(fresh)} items")
        for i, (f, v) in enumerate(zip(fresh, loaded)):
            _check_like(f, v, f"{where}[{i}]")
        return
    if isinstance(fresh, torch.Tensor):
        ok = isinstance(loaded, torch.Tensor) and loaded.shape == fresh.shape and loaded.dtype == fresh.dtype
    else:
        ok = type(loaded) is type(fresh) or (type(fresh) is float and type(loaded) is int)
    if not ok:
        raise CheckpointError(f"'{where}' must be like {fresh!r}, got {loaded!r}")


class Trainer:
    """One training run: ``Trainer(cfg, resume, overwrite=...).run()``. The parts, in the order they
    run: ``__init__`` (process set-up, resume state, run directory, data, method, optimiser,
    curriculum, restore), then ``run`` (the step loop, logging, checkpoints), each step being
    ``train_step``.

    ``train.out_dir`` holding a run (``last.pt`` or ``metrics.jsonl``) is only continued
    (``resume`` names its checkpoint) or replaced (``overwrite``: its checkpoint, metrics log and
    TensorBoard events are deleted first); otherwise the run stops with FileExistsError before it
    changes anything. Temporary files of a killed checkpoint or log write are removed at start."""

    def __init__(self, cfg: Config, resume: Optional[str] = None, log: Callable[[str], None] = print,
                 overwrite: bool = False):
        self.t0 = time.time()
        self.cfg, self.log = cfg, log
        self.checkpoint_path = os.path.join(cfg.train.out_dir, "last.pt")
        self.dist = self._init_process()
        state = self._load_resume_state(resume)
        self._claim_out_dir(resume, overwrite)
        self.train_set = self._load_train_set()
        init = self._load_init_state() if state is None else None
        saved = state or init
        self.tokenizer = make_tokenizer(cfg, self.train_set, saved["tokenizer"] if saved else None)
        self.method = methods.get(cfg.method)(cfg, self.train_set, self.tokenizer, self.dist)
        self.model = self.method.model
        if init is not None:
            self._initialise(init)
        self.opt, self.sched = build_optimizer(cfg, self.model)
        tc = cfg.train
        self.curriculum = Curriculum(cfg.curriculum, object_counts(self.train_set),
                                     entity_table(self.train_set, cfg.data.max_entities), tc.batch_size,
                                     tc.max_steps, tc.seed, getattr(self.train_set, "generated_mask", None),
                                     cfg.data.generated_fraction)
        self.step = self._restore(state, resume) if state else 0
        self.resumed = state is not None
        self.net = (torch.nn.parallel.DistributedDataParallel(self.model, **self.method.ddp_options()) if self.dist.enabled
                    else self.model)
        loss_fn = self.method.forward_loss
        self.step_fn = torch.compile(loss_fn, dynamic=False) if tc.compile else loss_fn

    # ---------------------------------------------------------------- set-up
    def _init_process(self) -> D.DistInfo:
        dist = D.init_from_env()
        tc = self.cfg.train
        if tc.threads > 0:
            torch.set_num_threads(tc.threads)
        if tc.batch_size % dist.world_size:
            raise ValueError(f"train.batch_size={tc.batch_size} must be divisible by the {dist.world_size} DDP ranks")
        self.local_batch = tc.batch_size // dist.world_size
        seed_everything(tc.seed)
        return dist

    def _load_train_set(self):
        # the main rank generates the synthetic benchmark (cached on disk) before the others read it
        if self.dist.is_main:
            splits = build_splits(self.cfg.data)
        D.barrier()
        if not self.dist.is_main:
            splits = build_splits(self.cfg.data)
        return splits["train"]

    def _load_resume_state(self, resume: Optional[str]) -> Optional[Dict]:
        if not resume:
            return None
        state = load_checkpoint(resume)
        _check_resume_config(state["config"], self.cfg, resume)
        check_tokenizer_state(state, self.cfg, resume)
        return state

    def _load_init_state(self) -> Optional[Dict]:
        """``train.init_from``: the checkpoint whose weights and tokenizer a fine-tuning run starts from."""
        path = self.cfg.train.init_from
        if not path:
            return None
        state = load_checkpoint(path)
        saved = state["config"]
        if saved.get("method") != self.cfg.method or saved.get("model") != config_to_dict(self.cfg)["model"]:
            raise CheckpointError(f"train.init_from={path} was trained with another method or model config")
        check_tokenizer_state(state, self.cfg, path)
        return state

    def _initialise(self, state: Dict) -> None:
        """Fine-tuning: the model (and the method's state) of another run; the optimiser, the
        curriculum and the step count start afresh."""
        path = self.cfg.train.init_from
        try:
            self.model.load_state_dict(state["model"])
            self.method.load_state_dict(state["method"])
        except (KeyError, TypeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"train.init_from={path} does not fit this model: {err}") from None
        self.log(f"initialised from {path} (step {state['step']})")

    def _claim_out_dir(self, resume: Optional[str], overwrite: bool) -> None:
        """Refuse to write over a run in out_dir that is neither continued nor meant to be replaced."""
        out = self.cfg.train.out_dir
        present = [name for name in RUN_FILES if os.path.exists(os.path.join(out, name))]
        continuing = (bool(resume) and os.path.exists(self.checkpoint_path)
                      and os.path.samefile(checkpoint_file(resume), self.checkpoint_path))
        if present and not continuing and not overwrite:
            how = f"--resume {out} to continue it, " if "last.pt" in present else ""
            raise FileExistsError(f"train.out_dir {out} already holds a run ({', '.join(present)}); pass {how}"
                                  f"--overwrite to replace it, or choose another train.out_dir")
        if not self.dist.is_main:
            return
        for name in RUN_FILES:
            remove_stale_temp_files(os.path.join(out, name))
        if present and overwrite and not continuing:
            tb = os.path.join(out, "tb")
            events = [os.path.join(tb, f) for f in os.listdir(tb) if f.startswith("events.out.tfevents.")] \
                if os.path.isdir(tb) else []
            for path in [os.path.join(out, name) for name in present] + events:
                os.unlink(path)
            self.log(f"replacing the run in {out} (--overwrite)")

    def _restore(self, state: Dict, path: str) -> int:
        try:
            _check_like(self.sched.state_dict(), state["scheduler"], "scheduler")
            _check_like(self.curriculum.state_dict(), state["curriculum"], "curriculum")
            self.model.load_state_dict(state["model"])
            self.method.load_state_dict(state["method"])
            self.opt.load_state_dict(state["optimizer"])
            self._check_optimizer_state()
            self.sched.load_state_dict(state["scheduler"])
            self.curriculum.load_state_dict(state["curriculum"])
            set_rng_state(state["rng"])
        except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} does not match this model/config: {err}") from None
        self.log(f"resumed from {path} at step {state['step']}")
        return state["step"]

    def _check_optimizer_state(self) -> None:
        """Every per-parameter optimiser buffer is a tensor shaped like its parameter (or a scalar)."""
        for group in self.opt.param_groups:
            for p in group["params"]:
                for name, value in self.opt.state.get(p, {}).items():
                    if value is None:
                        continue
                    if not isinstance(value, torch.Tensor) or (value.dim() > 0 and value.shape != p.shape):
                        raise CheckpointError(f"optimizer state '{name}' of a parameter of shape {tuple(p.shape)} "
                                              f"is {value!r:.80}")

    # ---------------------------------------------------------------- the loop
    def run(self) -> Dict:
        """Train to ``train.max_steps`` (or ``train.stop_after``); returns {"step", "checkpoint",
        "out_dir", "interrupted", "seconds", "world_size"}."""
        tc = self.cfg.train
        metrics = MetricsLog(tc.out_dir, self.dist.is_main, self.step if self.resumed else 0)
        bar = tqdm(total=tc.max_steps, initial=self.step, disable=not (tc.progress and self.dist.is_main),
                   mininterval=2.0, dynamic_ncols=True, file=sys.stderr)
        interrupted = False
        self.model.train()
        try:
            while self.step < tc.max_steps:
                parts, gamma = self.train_step()
                bar.update(1)
                if self.step % tc.log_every == 0 or self.step == tc.max_steps:
                    record = self._record(parts, gamma)
                    metrics.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.3f}", stage=self.curriculum.stage)
                if tc.ckpt_every and self.step % tc.ckpt_every == 0 and self.step < tc.max_steps:
                    self.save_checkpoint()
                if tc.stop_after and tc.stop_after <= self.step < tc.max_steps:
                    interrupted = True
                    break
            self.save_checkpoint()
        finally:
            bar.close()
            metrics.close()
        return dict(step=self.step, checkpoint=self.checkpoint_path, out_dir=tc.out_dir, interrupted=interrupted,
                    seconds=time.time() - self.t0, world_size=self.dist.world_size)

    def train_step(self):
        """One optimiser step on the curriculum's next global batch (this rank's slice of it)."""
        cur = self.curriculum
        if cur.needs_scores(self.step):
            cur.set_scores(self._semantic_scores(), self.step)
            self.log(f"step {self.step}: semantic scores (ScoreS) computed for {len(self.train_set)} samples")
        idx = cur.next_indices()
        rank = self.dist.rank
        local = idx[rank * self.local_batch:(rank + 1) * self.local_batch]
        batch = self.method.collate([self.train_set[int(i)] for i in local])
        gamma = torch.tensor(cur.gamma(self.step))
        parts = self.step_fn(self.net, batch, cur.sreg_for(local), gamma)
        self.opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        self.opt.step()
        self.sched.step()
        self.step += 1
        self.method.after_optimizer_step(self.step)
        return parts, gamma

    def _semantic_scores(self) -> torch.Tensor:
        cfg, data = self.cfg, self.train_set
        chunks = [range(i0, min(len(data), i0 + SCORE_BATCH)) for i0 in range(0, len(data), SCORE_BATCH)]
        if self.curriculum.uses_open_clip():
            if not cfg.curriculum.scorer_pretrained:
                raise ValueError("curriculum.scorer='open_clip' needs curriculum.scorer_pretrained (a local weights file)")
            return open_clip_semantic_scores(cfg.curriculum.scorer_model, cfg.curriculum.scorer_pretrained,
                                             ([data[i] for i in c] for c in chunks), cfg.data.max_entities)
        return self.method.semantic_scores(self.method.collate([data[i] for i in c]) for c in chunks)

    def _record(self, parts: Dict[str, torch.Tensor], gamma: torch.Tensor) -> Dict:
        record = {k: float(D.all_reduce_mean(v.detach())) for k, v in parts.items()}
        record["loss"] = record["loss"] / self.dist.world_size  # undo the DDP scaling for display
        record.update(step=self.step, lr=self.sched.get_last_lr()[0], gamma=float(gamma), stage=self.curriculum.stage,
                      pool=len(self.curriculum.pool()), elapsed=round(time.time() - self.t0, 2))
        return record

    def save_checkpoint(self) -> None:
        if self.dist.is_main:
            save_checkpoint(self.checkpoint_path, dict(
                model=self.model.state_dict(), method=self.method.state_dict(), optimizer=self.opt.state_dict(),
                scheduler=self.sched.state_dict(), curriculum=self.curriculum.state_dict(), rng=rng_state(),
                step=self.step, config=config_to_dict(self.cfg), tokenizer=self.tokenizer.state_dict(),
                world_size=self.dist.world_size))
        D.barrier()


def train(cfg: Config, resume: Optional[str] = None, log: Callable[[str], None] = print,
          overwrite: bool = False) -> Dict:
    """Run (or continue) training; returns {"step", "checkpoint", "out_dir", "interrupted", "seconds", "world_size"}.
    ``train.out_dir`` holding another run raises FileExistsError unless ``overwrite`` (see :class:`Trainer`)."""
    return Trainer(cfg, resume, log, overwrite).run()


def load_trained(path: str, evaluation_overrides: Sequence[str] = ()):
    """(method with its model in eval mode, Config, checkpoint dict) from a checkpoint path or run
    directory; ``evaluation_overrides`` ("method.key=value") change the method's evaluation-only
    options (e.g. "wwbl.box_threshold=0.5"), and nothing else."""
    state = load_checkpoint(path)
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {path} holds an invalid config: {err}") from None
    if evaluation_overrides:
        allowed = {f"{cfg.method}.{key}" for key in evaluation_keys(cfg.options)}
        for item in evaluation_overrides:
            key = item.partition("=")[0]
            if key not in allowed:
                raise ConfigError(f"override {item!r}: a trained model's evaluation can change only "
                                  f"{sorted(allowed) or 'nothing'} (method '{cfg.method}')")
        cfg = config_from_dict(apply_overrides(config_to_dict(cfg), list(evaluation_overrides)))
    check_tokenizer_state(state, cfg, path)
    tokenizer = make_tokenizer(cfg, state=state.get("tokenizer"))
    method = methods.get(cfg.method)(cfg, None, tokenizer, D.DistInfo())
    try:
        method.model.load_state_dict(state["model"])
        method.load_state_dict(state.get("method", {}))
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path}: model weights do not fit the saved config: {err}") from None
    method.model.eval()
    return method, cfg, state
