"""`dapo-fast eval`, `dapo-fast demo` and `dapo-fast ablation`, as functions.

The demo and every run of the ablation continue the run already in their directory (a finished
one is not retrained: resuming is bit-for-bit, so the numbers are those of a fresh run), which
makes running them twice, or again after an interruption, safe and cheap. A run there that cannot
be continued (another config) is refused, naming the directory; ``overwrite`` replaces it.
"""
from __future__ import annotations

import copy
import json
import os
import re
import time
from typing import Dict, List, Optional, Sequence

from dapo_fast.data import build_splits
from dapo_fast.eval.table import format_differences, format_table
from dapo_fast.train import methods
from dapo_fast.train.checkpoint import CheckpointError
from dapo_fast.train.config import (Config, ConfigError, apply_overrides, config_from_dict, config_to_dict,
                                     evaluation_keys)
from dapo_fast.train.loop import load_trained, train


def evaluate_checkpoint(path: str, split: str = "test", png: Optional[str] = None, data_root: Optional[str] = None,
                        limit: Optional[int] = None, evaluation_overrides: Sequence[str] = ()) -> Dict:
    """The checkpoint's method evaluated on ``split``; ``png``: also write its picture there;
    ``evaluation_overrides``: "method.key=value" for its evaluation-only options (load_trained)."""
    method, cfg, state = load_trained(path, evaluation_overrides)
    if data_root:
        cfg.data.root = data_root
    splits = build_splits(cfg.data)
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    res = method.evaluate(splits[split], limit=limit, png=png)
    res["step"] = int(state["step"])
    res["method"] = cfg.method
    return res


def results_table(rows: Dict[str, Dict], method: str) -> str:
    return format_table(rows, methods.get(method).COLUMNS)


def train_or_continue(cfg: Config, overwrite: bool = False, log=print) -> Dict:
    """``train(cfg)``, continuing the run in ``train.out_dir`` when it holds a checkpoint (unless
    ``overwrite``, which replaces it)."""
    out_dir = cfg.train.out_dir
    last = os.path.join(out_dir, "last.pt")
    if overwrite or not os.path.exists(last):
        return train(cfg, log=log, overwrite=overwrite)
    try:
        return train(cfg, resume=last, log=log)
    except CheckpointError as err:
        raise CheckpointError(f"{out_dir} holds a run that this one cannot continue ({err}); pass --overwrite to "
                              f"replace it, or --out for another directory") from None


def run_demo(cfg: Config, log=print, overwrite: bool = False) -> Dict:
    """Generate the synthetic benchmark, train (or continue the run in ``train.out_dir``), evaluate,
    print the table, write the PNG grid."""
    t0 = time.time()
    build_splits(cfg.data)
    t_data = time.time() - t0
    log(f"[demo] synthetic benchmark ready in {t_data:.1f}s ({cfg.data.num_train} train / {cfg.data.num_test} test) "
        f"at {cfg.data.root}")
    out = train_or_continue(cfg, overwrite, log)
    t_train = time.time() - t0 - t_data
    log(f"[demo] trained {out['step']} steps in {t_train:.1f}s")
    png = os.path.join(cfg.train.out_dir, "grid.png")
    res = evaluate_checkpoint(out["checkpoint"], "test", png=png, evaluation_overrides=evaluation_settings(cfg))
    total = time.time() - t0
    log(results_table({"test": res}, cfg.method))
    log(f"[demo] {methods.get(cfg.method).headline(res)}; picture: {png}; wall time {total:.0f}s")
    res.update(seconds=dict(data=t_data, train=t_train, total=total), checkpoint=out["checkpoint"])
    with open(os.path.join(cfg.train.out_dir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    return res


def variant_config(cfg: Config, overrides: Sequence[str], seed: int, out_dir: str) -> Config:
    """``cfg`` with a variant's overrides, the training seed and its own run directory."""
    data = apply_overrides(copy.deepcopy(config_to_dict(cfg)), list(overrides) + [f"train.seed={seed}"])
    variant = config_from_dict(data)
    variant.train.out_dir = out_dir
    return variant


def run_ablation(cfg: Config, variants: Optional[List[str]] = None, seeds: Sequence[int] = (0,),
                 log=print, overwrite: bool = False) -> Dict[str, Dict]:
    """Every variant of the method's ablation (``Method.ABLATION``) at the same budget, once per
    training seed (each run continues the one in its directory, see the module docstring); rows
    hold {"seeds": [result per seed], "seed_ids": [...]}."""
    method = methods.get(cfg.method)
    unknown = sorted(set(variants or ()) - set(method.ABLATION))
    if unknown:
        raise ConfigError(f"unknown ablation variant(s) {unknown} for method '{cfg.method}' "
                         f"(variants: {list(method.ABLATION)})")
    chosen = {name: overrides for name, overrides in method.ABLATION.items() if not variants or name in variants}
    return run_variants(cfg, chosen, seeds, log=log, overwrite=overwrite)


def generated_data_variants(generated: Dict[str, str]) -> Dict[str, List[str]]:
    """DAPO's Table 4 GAT row: real images only, and real + each named generated set
    (``dapo-fast generate`` outputs), everything else equal."""
    rows = {"real only": []}
    for name, root in generated.items():
        rows[f"real + {name}"] = [f"data.generated_root={root}"]
    return rows


def run_variants(cfg: Config, variants: Dict[str, List[str]], seeds: Sequence[int] = (0,), log=print,
                 overwrite: bool = False, name: str = "ablation") -> Dict[str, Dict]:
    """Train and evaluate ``cfg`` with each variant's overrides ("section.key=value") at the same
    budget, once per training seed (each run continues the one in its directory); writes
    <out>/<name>.json and <name>.md (mean and spread over the seeds)."""
    method = methods.get(cfg.method)
    base_out = cfg.train.out_dir
    rows = {}
    for variant, overrides in variants.items():
        rows[variant] = dict(seeds=[], seed_ids=list(seeds), overrides=list(overrides))
        for seed in seeds:
            run_dir = os.path.join(base_out, _directory_name(variant), f"seed{seed}")
            run_cfg = variant_config(cfg, overrides, seed, run_dir)
            out = train_or_continue(run_cfg, overwrite, log)
            res = evaluate_checkpoint(out["checkpoint"], "test", evaluation_overrides=evaluation_settings(run_cfg))
            res["train_seconds"] = out["seconds"]
            rows[variant]["seeds"].append(res)
            log(f"[{name}] {variant} seed {seed}: {method.headline(res)} ({out['seconds']:.0f}s)")
    table = results_table(rows, cfg.method)
    # the first variant (wwbl: no curriculum) is what the others are compared with
    differences = format_differences(rows, method.COLUMNS, next(iter(rows))) if len(rows) > 1 else ""
    if differences:
        table += "\n\n" + differences
    log(table)
    os.makedirs(base_out, exist_ok=True)
    with open(os.path.join(base_out, f"{name}.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(base_out, f"{name}.md"), "w") as f:
        f.write(table + "\n")
    return rows


def evaluation_settings(cfg: Config) -> List[str]:
    """``cfg``'s evaluation-only options as overrides: a finished run is scored as the config
    asks now, whatever its checkpoint was trained with."""
    return [f"{cfg.method}.{key}={json.dumps(getattr(cfg.options, key))}" for key in evaluation_keys(cfg.options)]


def _directory_name(variant: str) -> str:
    """A variant's run directory: its name with every run of other characters than letters,
    digits, '.' and '-' replaced by one '_' ("ScoreQ+ScoreS" -> "ScoreQ_ScoreS")."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", variant).strip("_")
