"""`dapo-fast bench`: times every implementation of every case side by side in one process.

For each case: build inputs once, then per implementation a warm-up call and the median of
`repeats` timed calls, forward (under no_grad) and forward+backward. The machine's copy
bandwidth is measured in the same run so memory-bound kernels are reported as a fraction of
it. Results go to stdout (a table), CSV, JSON and a PNG chart.
"""
import csv
import json
import os
import platform
import statistics
import time
from typing import Callable, Dict, List, Optional

import torch

from dapo_fast.bench.registry import Case, all_cases, backward_of


def _median_ms(fn: Callable[[], object], repeats: int, warmup: int = 1, slow_seconds: float = 2.0) -> float:
    """Median wall time in ms after `warmup` calls. A call slower than `slow_seconds` (the eager
    references at full size) is timed once more instead of `repeats` times."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    if warmup and (time.perf_counter() - start) / warmup > slow_seconds:
        repeats = 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def copy_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Bytes read + written per second by a large tensor copy (this machine's memory ceiling)."""
    src = torch.ones(megabytes * 2**20 // 4)
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src), repeats)
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def peak_memory_bytes(fn: Callable[[], object]) -> int:
    """Peak CPU bytes held by torch allocations made while fn runs, from the profiler's raw
    allocation records ("[memory]" events), so a nested op (zeros -> empty, matmul -> mm) is
    counted once."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    records = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
    current = peak = 0
    for e in records:
        current += e.nbytes()
        peak = max(peak, current)
    return peak


def _zero_grads(inputs: Dict[str, object], keys: List[str]) -> None:
    for k in keys:
        t = inputs[k]
        if isinstance(t, torch.Tensor):
            t.grad = None


def run_case(case: Case, repeats: int, impl_filter: Optional[List[str]] = None) -> List[dict]:
    inputs = case.make_inputs()
    rows = []
    for name, impl in case.impls.items():
        if impl_filter and name not in impl_filter:
            continue
        row = {"op": case.op, "size": case.size, "impl": name, "ours": name in case.ours}
        try:
            with torch.no_grad():
                row["fwd_ms"] = _median_ms(lambda: impl(inputs), repeats)
            if case.grad_inputs:
                def fwd_bwd():
                    _zero_grads(inputs, case.grad_inputs)
                    backward_of(impl(inputs))

                row["fwd_bwd_ms"] = _median_ms(fwd_bwd, repeats)
            if case.measure_memory:
                def step():
                    _zero_grads(inputs, case.grad_inputs)
                    out = impl(inputs)
                    if case.grad_inputs:
                        backward_of(out)

                row["peak_mb"] = peak_memory_bytes(step) / 2**20
        except Exception as err:  # a baseline that cannot run at this size is reported, not fatal
            row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
        rows.append(row)
    by_name = {r["impl"]: r for r in rows}
    for r in rows:
        for base in case.baselines:
            b = by_name.get(base)
            if b is None or b is r:
                continue
            for key in ("fwd_ms", "fwd_bwd_ms"):
                if key in r and key in b:
                    r[f"speedup_{key[:-3]}_vs_{base}"] = b[key] / r[key]
            if r.get("peak_mb") and "peak_mb" in b:
                r[f"memory_ratio_vs_{base}"] = b["peak_mb"] / r["peak_mb"]
        if case.bytes_moved and "fwd_ms" in r:
            r["fwd_gbs"] = case.bytes_moved / (r["fwd_ms"] * 1e-3) / 1e9
        if case.bytes_moved_fwd_bwd and "fwd_bwd_ms" in r:
            r["fwd_bwd_gbs"] = case.bytes_moved_fwd_bwd / (r["fwd_bwd_ms"] * 1e-3) / 1e9
    return rows


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(rows: List[dict], bandwidth: float) -> None:
    """One line per implementation; GB/s is the case's minimal traffic over the measured time
    (forward, and forward+backward where the case names its traffic) and %bw its share of the copy
    bandwidth."""
    print(f"\ncopy bandwidth measured in this run: {bandwidth:.1f} GB/s (read + write)")
    header = (f"{'op':<30}{'size':<20}{'impl':<28}{'fwd ms':>10}{'fwd+bwd ms':>12}{'GB/s':>8}{'%bw':>6}"
              f"{'f+b GB/s':>10}{'%bw':>6}  speedups (fwd / fwd+bwd)")
    print(header)
    print("-" * len(header))

    def share(gbs):
        return None if gbs is None else 100 * gbs / bandwidth

    for r in rows:
        gbs, fb_gbs = r.get("fwd_gbs"), r.get("fwd_bwd_gbs")
        speed = ", ".join(
            f"vs {k.split('_vs_', 1)[1]}: {r[k]:.2f}x" + (f"/{r[k.replace('fwd', 'fwd_bwd')]:.2f}x" if k.replace("fwd", "fwd_bwd") in r else "")
            for k in r if k.startswith("speedup_fwd_vs_")
        ) if r["ours"] else ""
        line = (f"{r['op']:<30}{r['size']:<20}{r['impl']:<28}{_fmt(r.get('fwd_ms'), '10.2f'):>10}"
                f"{_fmt(r.get('fwd_bwd_ms'), '12.2f'):>12}{_fmt(gbs, '8.1f'):>8}{_fmt(share(gbs), '5.0f'):>6}"
                f"{_fmt(fb_gbs, '10.1f'):>10}{_fmt(share(fb_gbs), '5.0f'):>6}  {speed}")
        if "peak_mb" in r:
            line += f"  peak {r['peak_mb']:.1f} MB"
            ratios = ", ".join(f"{k.split('_vs_', 1)[1]} {r[k]:.1f}x" for k in r if k.startswith("memory_ratio_vs_"))
            if r["ours"] and ratios:
                line += f" (less memory than: {ratios})"
        if "error" in r:
            line += f"  [{r['error']}]"
        print(line)


def write_results(rows: List[dict], bandwidth: float, out_dir: str) -> Dict[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    meta = {"copy_bandwidth_gbs": bandwidth, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    try:
        import dapo_fast

        meta["build_info"] = dapo_fast.build_info()
    except Exception:  # pragma: no cover
        pass
    paths = {"json": os.path.join(out_dir, "bench.json"), "csv": os.path.join(out_dir, "bench.csv"),
             "png": os.path.join(out_dir, "bench.png")}
    with open(paths["json"], "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("op", "size", "impl"), k))
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    _plot(rows, paths["png"])
    return paths


def _plot(rows: List[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {}
    for r in rows:
        groups.setdefault((r["op"], r["size"]), []).append(r)
    fig, axes = plt.subplots(len(groups), 1, figsize=(9, 2.2 * max(len(groups), 1)), squeeze=False)
    for ax, ((op, size), rs) in zip(axes[:, 0], groups.items()):
        names = [r["impl"] for r in rs]
        fwd = [r.get("fwd_ms", 0.0) for r in rs]
        fb = [r.get("fwd_bwd_ms", 0.0) for r in rs]
        y = range(len(rs))
        ax.barh([i - 0.2 for i in y], fwd, height=0.4, label="forward")
        ax.barh([i + 0.2 for i in y], fb, height=0.4, label="forward+backward")
        ax.set_yticks(list(y), names, fontsize=7)
        ax.set_xscale("log")
        positive = [v for v in fwd + fb if v > 0]
        if positive:  # start the axis below the fastest bar so it stays visible
            ax.set_xlim(left=min(positive) / 2)
        ax.set_title(f"{op} @ {size} (ms, log scale)", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(ops: Optional[List[str]] = None, quick: bool = False, repeats: int = 5, out_dir: str = "benchmarks/results",
         impls: Optional[List[str]] = None) -> List[dict]:
    cases = [c for c in all_cases() if (not ops or c.op in ops) and (c.quick or not quick)]
    if not cases:
        raise SystemExit(f"no benchmark case matches ops={ops} quick={quick}")
    bandwidth = copy_bandwidth_gbs()
    rows = []
    for case in cases:
        print(f"[bench] {case.op} @ {case.size} ...", flush=True)
        rows.extend(run_case(case, repeats, impls))
    print_table(rows, bandwidth)
    paths = write_results(rows, bandwidth, out_dir)
    print(f"\nwrote {paths['csv']}, {paths['json']}, {paths['png']}")
    return rows
