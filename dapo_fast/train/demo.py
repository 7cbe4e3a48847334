"""`dapo-fast eval`, `dapo-fast demo` and the Table-4-style ablation, as functions."""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Dict, List, Optional

import torch

from dapo_fast.train.config import Config, config_to_dict, load_config

ABLATION = (("none", False, False), ("ScoreQ", True, False), ("ScoreS", False, True), ("ScoreQ+ScoreS", True, True))


def evaluate_checkpoint(path: str, split: str = "test", png: Optional[str] = None, data_root: Optional[str] = None,
                        limit: Optional[int] = None, log=print) -> Dict:
    from dapo_fast.data import build_splits
    from dapo_fast.eval import evaluate, save_grid
    from dapo_fast.train.loop import load_trained

    model, encode, cfg, state = load_trained(path)
    if data_root:
        cfg.data.root = data_root
    splits = build_splits(cfg.data)
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    ds = splits[split]
    res = evaluate(model, ds, encode, cfg.data.image_size, cfg.data.max_entities, limit=limit)
    res["step"] = int(state["step"])
    if png:
        save_grid(model, ds, encode, cfg.data.image_size, cfg.data.max_entities, png)
        res["png"] = png
    return res


def run_demo(cfg: Config, log=print) -> Dict:
    """Generate the synthetic benchmark, train, evaluate, print the table, write the PNG grid."""
    from dapo_fast.data import build_splits
    from dapo_fast.eval import format_table
    from dapo_fast.train.loop import train

    t0 = time.time()
    build_splits(cfg.data)
    t_data = time.time() - t0
    log(f"[demo] synthetic benchmark ready in {t_data:.1f}s ({cfg.data.num_train} train / {cfg.data.num_test} test) "
        f"at {cfg.data.root}")
    out = train(cfg, log=log)
    t_train = time.time() - t0 - t_data
    log(f"[demo] trained {out['step']} steps in {t_train:.1f}s")
    png = os.path.join(cfg.train.out_dir, "grid.png")
    res = evaluate_checkpoint(out["checkpoint"], "test", png=png, log=log)
    total = time.time() - t0
    log(format_table({"test": res}))
    log(f"[demo] pointing game {res['pointing']:.1f}% overall, {res['subsets']['6+']['pointing']:.1f}% on 6+ objects; "
        f"bbox accuracy {res['bbox']:.1f}%; picture: {png}; wall time {total:.0f}s")
    res.update(seconds=dict(data=t_data, train=t_train, total=total), checkpoint=out["checkpoint"])
    with open(os.path.join(cfg.train.out_dir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    return res


def run_ablation(cfg: Config, variants: Optional[List[str]] = None, log=print) -> Dict[str, Dict]:
    """The same budget with no curriculum, ScoreQ only, ScoreS only, both (DAPO Table 4's rows)."""
    from dapo_fast.eval import format_table
    from dapo_fast.train.loop import train

    rows = {}
    base_out = cfg.train.out_dir
    for name, q, s in ABLATION:
        if variants and name not in variants:
            continue
        c = copy.deepcopy(cfg)
        c.curriculum.score_q, c.curriculum.score_s = q, s
        c.train.out_dir = os.path.join(base_out, name.replace("+", "_"))
        t0 = time.time()
        out = train(c, log=log)
        rows[name] = evaluate_checkpoint(out["checkpoint"], "test", log=log)
        rows[name]["train_seconds"] = time.time() - t0
        log(f"[ablation] {name}: PG {rows[name]['pointing']:.1f} (6+: {rows[name]['subsets']['6+']['pointing']:.1f}) "
            f"bbox {rows[name]['bbox']:.1f} in {rows[name]['train_seconds']:.0f}s")
    table = format_table(rows)
    log(table)
    os.makedirs(base_out, exist_ok=True)
    with open(os.path.join(base_out, "ablation.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(base_out, "ablation.md"), "w") as f:
        f.write(table + "\n")
    return rows
