"""`dapo-fast gat-demo`: DAPO's generation-aided training, the whole chain on the CPU.

1. train the grounder on the real synthetic benchmark (the `dapo-fast demo` run);
2. generate images with the small text-to-image model shipped with the package, guided by that
   grounder's heatmaps (eq. 4), keeping the final-step entity attention maps;
3. fine-tune the grounder on real + generated images (eq. 6: the task loss on real images, L_D
   on generated ones) and, as the control at the same step budget, on real images only;
4. evaluate all three on the real test split; measure the generated images' fidelity.

Every stage is skipped when its output exists (a rerun continues where a stopped one stopped).
"""
from __future__ import annotations

import copy
import json
import os
import time
from typing import Dict, Optional

__all__ = ["run_gat_demo"]


def run_gat_demo(cfg, out_dir: str = "runs/gat_demo", model_dir: Optional[str] = None, num_images: int = 320,
                 finetune_steps: int = 500, steps: int = 50, batch_size: int = 16, log=print) -> Dict:
    """Run the chain; ``cfg`` is the grounder's training config (the demo's by default in the CLI)."""
    from dapo_fast.data.generated import GeneratedSet
    from dapo_fast.diffusion.fidelity import fidelity_of_set
    from dapo_fast.diffusion.generate import GenerationSettings, generate, sample_prompts
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

    generated_dir = os.path.join(out_dir, "generated")
    two = round(0.7 * num_images)  # DAPO's 7:3 of two- and three-entity captions
    prompts = sample_prompts(two, num_images - two, seed=0)
    settings = GenerationSettings(steps=steps, guidance=True)
    stage("generate (eq. 4)", lambda: generate(model_dir, generated_dir, prompts, settings, grounder_path=grounder,
                                                batch_size=batch_size, shard_size=64, save_maps=False, log=log,
                                                prompt_source=f"sampler({two}, {num_images - two}, seed=0)"))

    def finetuned(name, generated_root):
        c = copy.deepcopy(base)
        c.train.out_dir = os.path.join(out_dir, name)
        c.train.init_from = grounder
        c.train.max_steps = finetune_steps
        c.data.generated_root = generated_root
        return trained(c)

    gat = stage("fine-tune (real + generated)", lambda: finetuned("finetuned_gat", generated_dir))
    control = stage("fine-tune (real only)", lambda: finetuned("finetuned_real", None))

    def evaluate_all():
        return {"grounder (real)": evaluate_checkpoint(grounder, "test"),
                f"+ {finetune_steps} steps real only": evaluate_checkpoint(control, "test"),
                f"+ {finetune_steps} steps real + generated (GAT)": evaluate_checkpoint(gat, "test")}

    rows = stage("evaluate", evaluate_all)
    generated = GeneratedSet(generated_dir)
    fidelity = stage("fidelity", lambda: fidelity_of_set(generated))
    table = results_table(rows, cfg.method)
    log(table)
    log(f"[gat-demo] {len(generated)} generated images: {fidelity['found']:.1f}% of prompted entities found "
        f"(colour + shape), {fidelity['all_found']:.1f}% of images with every entity, final-step attention peak "
        f"on the entity {fidelity['peak_on_entity']:.1f}%")
    method = methods.get(cfg.method)
    for name, res in rows.items():
        log(f"[gat-demo] {name}: {method.headline(res)}")
    total = time.time() - t0
    log(f"[gat-demo] wall time {total:.0f}s (" + ", ".join(f"{k} {v:.0f}s" for k, v in times.items()) + ")")
    summary = dict(rows=rows, fidelity=fidelity, seconds=dict(times, total=total), generated=generated_dir,
                   model=model_dir, num_images=len(generated), finetune_steps=finetune_steps)
    with open(os.path.join(out_dir, "gat_demo.json"), "w") as f:
        json.dump(summary, f, indent=1)
    with open(os.path.join(out_dir, "gat_demo.md"), "w") as f:
        f.write(table + "\n")
    return summary
