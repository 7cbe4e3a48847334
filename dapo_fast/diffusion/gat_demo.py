"""`dapo-fast gat-demo`: DAPO's generation-aided training, the whole chain on the CPU.

1. train the grounder on the real synthetic benchmark (the `dapo-fast demo` run);
2. generate images with the small text-to-image model shipped with the package, guided by that
   grounder's heatmaps (eq. 4), keeping the final-step entity attention maps; with
   ``compare_plain`` also the same prompts and seeds without the guidance;
3. fine-tune the grounder on real + generated images (eq. 6: the task loss on real images, L_D
   on generated ones) and, as the control at the same step budget, on real images only (and on
   real + the unguided images);
4. evaluate every grounder on the real test split; measure the generated images' fidelity.

DAPO fine-tunes a trained grounder this way; `dapo-fast ablation --generated` is the other
protocol (every row trained from scratch at one budget).
Every stage is skipped when its output exists (a rerun continues where a stopped one stopped).
"""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Dict, Optional, Sequence

__all__ = ["run_gat_demo", "generate_demo_set", "finetune_config"]


def generate_demo_set(model_dir: str, out_dir: str, grounder: Optional[str], num_images: int, steps: int,
                      batch_size: int, log=print) -> Dict:
    """The demo's generated set: DAPO's 7:3 two- and three-entity captions (sampler seed 0, image
    seeds 0..N-1), guided by ``grounder``'s heatmaps or, with ``grounder=None``, unguided."""
    from dapo_fast.diffusion.generate import GenerationSettings, generate, sample_prompts

    two = round(0.7 * num_images)
    prompts = sample_prompts(two, num_images - two, seed=0)
    settings = GenerationSettings(steps=steps, guidance=grounder is not None)
    return generate(model_dir, out_dir, prompts, settings, grounder_path=grounder, batch_size=batch_size,
                    shard_size=64, save_maps=False, log=log, prompt_source=f"sampler({two}, {num_images - two}, seed=0)")


def finetune_config(base, out_dir: str, grounder: str, steps: int, generated_root: Optional[str], seed: int = 0):
    """``base`` continued from ``grounder`` for ``steps`` steps in ``out_dir`` with training seed
    ``seed``, on real images and, with ``generated_root``, that generated set."""
    c = copy.deepcopy(base)
    c.train.out_dir = out_dir
    c.train.init_from = grounder
    c.train.max_steps = steps
    c.train.seed = seed
    c.data.generated_root = generated_root
    return c


def run_gat_demo(cfg, out_dir: str = "runs/gat_demo", model_dir: Optional[str] = None, num_images: int = 320,
                 finetune_steps: int = 500, steps: int = 50, batch_size: int = 16, compare_plain: bool = False,
                 seeds: Sequence[int] = (0,), log=print) -> Dict:
    """Run the chain; ``cfg`` is the grounder's training config (the demo's by default in the CLI).
    Every fine-tuning runs once per training seed in ``seeds`` (<out>/<run>/seed<s>), from the
    same grounder and generated images; the table gives the mean and spread over the seeds."""
    from dapo_fast.data.generated import GeneratedSet
    from dapo_fast.diffusion.fidelity import fidelity_of_set
    from dapo_fast.diffusion.models import small_model_dir
    from dapo_fast.train import methods
    from dapo_fast.train.demo import evaluate_checkpoint, results_table, train_or_continue

    t0 = time.time()
    model_dir = model_dir or small_model_dir()
    times = {}

    def stage(name, fn):
        start = time.time()
        result = fn()
        times[name] = time.time() - start
        return result

    def trained(c):
        return train_or_continue(c, log=log)["checkpoint"]

    base = copy.deepcopy(cfg)
    base.train.out_dir = os.path.join(out_dir, "grounder")
    grounder = stage("train grounder (real)", lambda: trained(base))

    sets = {"generated": grounder}  # run directory name -> the grounder guiding it (None: unguided)
    if compare_plain:
        sets["generated_plain"] = None
    for name, guide in sets.items():
        stage(f"generate ({'eq. 4' if guide else 'unguided'})",
              lambda: generate_demo_set(model_dir, os.path.join(out_dir, name), guide, num_images, steps,
                                        batch_size, log=log))

    def finetuned(name, generated):
        root = os.path.join(out_dir, generated) if generated else None
        return [trained(finetune_config(base, os.path.join(out_dir, name, f"seed{seed}"), grounder, finetune_steps,
                                        root, seed)) for seed in seeds]

    control = stage("fine-tune (real only)", lambda: finetuned("finetuned_real", None))
    gat = stage("fine-tune (real + generated)", lambda: finetuned("finetuned_gat", "generated"))
    runs = {f"+ {finetune_steps} steps real only": control}  # row name -> checkpoints per seed
    if compare_plain:
        runs[f"+ {finetune_steps} steps real + unguided generated"] = stage(
            "fine-tune (real + unguided)", lambda: finetuned("finetuned_plain", "generated_plain"))
    runs[f"+ {finetune_steps} steps real + generated (GAT)"] = gat

    def evaluate_all():
        rows = {"grounder (real)": evaluate_checkpoint(grounder, "test")}
        for name, checkpoints in runs.items():
            rows[name] = dict(seeds=[evaluate_checkpoint(c, "test") for c in checkpoints], seed_ids=list(seeds))
        return rows

    rows = stage("evaluate", evaluate_all)
    fidelity = {name: stage(f"fidelity ({name})", lambda: fidelity_of_set(GeneratedSet(os.path.join(out_dir, name))))
                for name in sets}
    table = results_table(rows, cfg.method)
    log(table)
    for name, fid in fidelity.items():
        log(f"[gat-demo] {name}: {fid['images']} images, {fid['found']:.1f}% of prompted entities found (colour + "
            f"shape), {fid['all_found']:.1f}% of images with every entity, final-step attention peak on the "
            f"entity {fid['peak_on_entity']:.1f}%")
    method = methods.get(cfg.method)
    for name, row in rows.items():
        for seed, res in zip(row.get("seed_ids", [None]), row.get("seeds", [row])):
            log(f"[gat-demo] {name}{'' if seed is None else f' (seed {seed})'}: {method.headline(res)}")
    total = time.time() - t0
    log(f"[gat-demo] wall time {total:.0f}s (" + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + ")")
    summary = dict(rows=rows, fidelity=fidelity["generated"], seconds=dict(times, total=total),
                   generated=os.path.join(out_dir, "generated"), model=model_dir,
                   num_images=fidelity["generated"]["images"], finetune_steps=finetune_steps, seeds=list(seeds))
    if compare_plain:
        summary["fidelity_plain"] = fidelity["generated_plain"]
    with open(os.path.join(out_dir, "gat_demo.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "gat_demo.md"), "w") as f:
        f.write(table + "\n")
    return summary
