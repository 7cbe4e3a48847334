"""Eager vs ``torch.compile`` training step of every method's model (what ``train.compile`` buys).

For each method (its shipped config, or its defaults where none ships) and each thread count, a
fresh child process builds the method on one synthetic batch of the config's batch size and runs
the loop's step (``forward_loss`` -> backward -> optimiser step -> ``after_optimizer_step``) two
ways on the same model: eager ``forward_loss`` and ``torch.compile(forward_loss, dynamic=False)``
as ``dapo-fast train`` compiles it. The first compiled step is the compile time; after warm-up the
two are timed alternately (steady-state median ms/step, side by side in one process, so a loaded
machine slows both alike). Models: the heatmap grounder (wwbl), the proposal grounders (mpl, reir,
querymatch), the referring segmenter (pcnet, tris).

    python benchmarks/compile_train_step.py                       # all methods, 1 and 2 threads
    python benchmarks/compile_train_step.py --methods mpl --threads 1 --steps 10
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

METHOD_CONFIGS = {"wwbl": "configs/demo.yaml", "mpl": "configs/mpl.yaml", "reir": "configs/reir.yaml",
                  "querymatch": "configs/querymatch.yaml", "pcnet": "configs/pcnet.yaml", "tris": None}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(method: str, seed: int = 0):
    """(method object, optimiser, batch, sreg) of ``method`` at its config's sizes."""
    import torch

    from dapo_fast.data.sample import WordTokenizer
    from dapo_fast.data.synthetic import PRESETS, generate_split
    from dapo_fast.train import methods
    from dapo_fast.train.config import config_from_dict, load_config
    from dapo_fast.train.distributed import DistInfo
    from dapo_fast.train.loop import build_optimizer

    path = METHOD_CONFIGS[method]
    cfg = load_config(os.path.join(ROOT, path)) if path else config_from_dict({"method": method})
    batch_size = cfg.train.batch_size
    data = generate_split("train", batch_size, seed, PRESETS[cfg.data.preset])
    cls = methods.get(method)
    tokenizer = WordTokenizer.build(cls.vocabulary_texts(cfg, data))
    torch.manual_seed(seed)
    m = cls(cfg, data, tokenizer, DistInfo())
    opt, _ = build_optimizer(cfg, m.model)
    batch = m.collate([data[i] for i in range(batch_size)])
    # the self-paced weights the curriculum passes once ScoreS is on (values do not change the cost)
    sreg = torch.full((batch_size, cfg.data.max_entities), 0.5) if cfg.curriculum.score_s else None
    return m, opt, batch, sreg


def make_step(m, opt, batch, sreg, step_fn, done):
    """One training step as the loop runs it; ``done`` counts the steps of every mode (the method's
    schedules follow it)."""
    import torch

    gamma = torch.tensor(0.3)

    def step():
        parts = step_fn(m.model, batch, sreg, gamma)
        opt.zero_grad(set_to_none=True)
        parts["loss"].backward()
        opt.step()
        done[0] += 1
        m.after_optimizer_step(done[0])
        return parts["loss"].detach()
    return step


def measure(method: str, threads: int, steps: int, warmup: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    m, opt, batch, sreg = build(method)
    done = [0]
    eager = make_step(m, opt, batch, sreg, m.forward_loss, done)
    compiled = make_step(m, opt, batch, sreg, torch.compile(m.forward_loss, dynamic=False), done)
    t0 = time.perf_counter()
    compiled()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        eager()
        compiled()
    times = {"eager": [], "compiled": []}
    for _ in range(steps):
        for name, fn in (("eager", eager), ("compiled", compiled)):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) * 1e3)
    eager_ms, compiled_ms = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {"method": method, "threads": threads, "batch": int(next(iter(batch.values())).shape[0]),
            "eager_ms": eager_ms, "compiled_ms": compiled_ms, "compiled_speedup": eager_ms / compiled_ms,
            "compile_s": compile_s}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="*", default=list(METHOD_CONFIGS))
    p.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    p.add_argument("--steps", type=int, default=10, help="timed steps of each mode (median)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:  # one (method, threads) in this process
        print(json.dumps(measure(a.methods[0], a.threads[0], a.steps, a.warmup)))
        return
    rows = []
    print("| method | threads | batch | eager ms/step | compiled ms/step | compiled speedup | compile s |")
    print("|---|---|---|---|---|---|---|")
    for method in a.methods:
        for threads in a.threads:
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", "--methods", method,
                                  "--threads", str(threads), "--steps", str(a.steps), "--warmup", str(a.warmup)],
                                 capture_output=True, text=True, cwd=ROOT)
            if out.returncode:
                print(f"| {method} | {threads} | failed: {out.stderr.strip().splitlines()[-1:]} |")
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(r)
            print(f"| {method} | {threads} | {r['batch']} | {r['eager_ms']:.1f} | {r['compiled_ms']:.1f} | "
                  f"{r['compiled_speedup']:.2f}x | {r['compile_s']:.0f} |", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
