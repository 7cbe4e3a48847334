"""What `dapo-fast bench` writes: result files (CSV, JSON, PNG) and the published Markdown report.

Files (fixed columns, one run):
  bench.json      the machine and run (``meta``) and every measured row, as the runner made them
  bench.csv       one row per implementation: times quiet (and busy), GB/s, peak memory, error
  speedups.csv    one row per (ours, baseline, pass): quiet and busy speedup, retention
  memory.csv      one row per (ours, baseline) of the cases that measure memory: peak MB, ratio
  h100_paper.csv  one row per case: bytes moved, FLOPs and the time an H100 would need on paper
  speedup.png     every speedup against every baseline, quiet next to busy, forward | forward+backward
  memory.png      how many times less peak memory than each baseline
"""
import csv
import datetime
import json
import os
import platform
from typing import Dict, List, Optional

import torch

from dapo_fast.bench.registry import Case

# H100 SXM5 datasheet figures: HBM3 bandwidth, FP32 (non-tensor-core) and dense BF16 tensor-core rates
H100_HBM_BYTES_PER_S = 3.35e12
H100_FP32_FLOPS_PER_S = 67e12
H100_BF16_DENSE_FLOPS_PER_S = 989e12
RETENTION_BAR = 0.8  # a multi-threaded CPU kernel keeps at least this share of its quiet speedup when busy
NOISY_MARK = "†"

PASSES = (("fwd", "forward"), ("fwd_bwd", "forward+backward"))
NOISY_SPREAD = 2.0  # slowest / fastest timed call above this: the median may be an interrupted call
TIMINGS_COLUMNS = ["op", "size", "device", "impl", "ours", "fwd_ms", "fwd_bwd_ms", "busy_fwd_ms", "busy_fwd_bwd_ms",
                   "fwd_spread", "fwd_bwd_spread", "busy_fwd_spread", "busy_fwd_bwd_spread",
                   "fwd_gbs", "fwd_bwd_gbs", "peak_mb", "error"]
SPEEDUP_COLUMNS = ["op", "size", "device", "ours", "baseline", "pass", "quiet_speedup", "busy_speedup", "retention",
                   "quiet_spread", "busy_spread"]
MEMORY_COLUMNS = ["op", "size", "device", "ours", "baseline", "ours_peak_mb", "baseline_peak_mb", "memory_ratio"]
PAPER_COLUMNS = ["op", "size", "pass", "bytes", "flops", "ours", "ours_ms", "ours_gbs", "bandwidth_share",
                 "h100_memory_us", "h100_fp32_us", "h100_bf16_us", "h100_paper_us"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str, bandwidth_gbs: float) -> Dict[str, object]:
    """What the numbers depend on, recorded beside them."""
    import dapo_fast

    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "dapo_fast": dapo_fast.__version__,
            "device": device, "copy_bandwidth_gbs": bandwidth_gbs,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    try:
        info["build_info"] = dapo_fast.build_info()
    except Exception as err:  # report the broken build, do not hide the timings
        info["build_info"] = f"unavailable: {err}"
    return info


def h100_paper_us(bytes_moved: Optional[int], flops: Optional[int]) -> Dict[str, Optional[float]]:
    """Microseconds an H100 would need on paper: its bytes at HBM3 bandwidth, its FLOPs at the FP32
    and the dense BF16 tensor-core rate, and the bound max(memory, FP32) for our FP32 kernels."""
    memory = None if bytes_moved is None else bytes_moved / H100_HBM_BYTES_PER_S * 1e6
    fp32 = None if flops is None else flops / H100_FP32_FLOPS_PER_S * 1e6
    bf16 = None if flops is None else flops / H100_BF16_DENSE_FLOPS_PER_S * 1e6
    known = [v for v in (memory, fp32) if v is not None]
    return {"h100_memory_us": memory, "h100_fp32_us": fp32, "h100_bf16_us": bf16,
            "h100_paper_us": max(known) if known else None}


def speedup_table(rows: List[dict], cases: List[Case]) -> List[dict]:
    """One entry per (ours, baseline, pass) measured; ``quiet_spread``/``busy_spread`` is the larger
    spread (slowest / fastest call) of the two timings behind that speedup."""
    baselines = {(c.op, c.size): c.baselines for c in cases}
    by_impl = {(r["op"], r["size"], r["impl"]): r for r in rows}

    def spread(a, b, key):
        values = [x.get(key) for x in (a, b) if x.get(key) is not None]
        return max(values) if values else None

    out = []
    for r in rows:
        if not r["ours"]:
            continue
        for base in baselines.get((r["op"], r["size"]), ()):
            b = by_impl.get((r["op"], r["size"], base), {})
            for key, _ in PASSES:
                quiet = r.get(f"speedup_{key}_vs_{base}")
                if quiet is None:
                    continue
                out.append({"op": r["op"], "size": r["size"], "device": r["device"], "ours": r["impl"],
                            "baseline": base, "pass": key, "quiet_speedup": quiet,
                            "busy_speedup": r.get(f"busy_speedup_{key}_vs_{base}"),
                            "retention": r.get(f"retention_{key}_vs_{base}"),
                            "quiet_spread": spread(r, b, f"{key}_spread"),
                            "busy_spread": spread(r, b, f"busy_{key}_spread")})
    return out


def noisy(entry: dict, which: str = "quiet") -> bool:
    """Whether a speedup entry's ``which`` ("quiet" or "busy") timings varied more than NOISY_SPREAD."""
    value = entry.get(f"{which}_spread")
    return value is not None and value > NOISY_SPREAD


def memory_table(rows: List[dict], cases: List[Case]) -> List[dict]:
    by_impl = {(r["op"], r["size"], r["impl"]): r for r in rows}
    baselines = {(c.op, c.size): c.baselines for c in cases}
    out = []
    for r in rows:
        if not r["ours"] or "peak_mb" not in r:
            continue
        for base in baselines.get((r["op"], r["size"]), ()):
            b = by_impl.get((r["op"], r["size"], base))
            if b is None or f"memory_ratio_vs_{base}" not in r:
                continue
            out.append({"op": r["op"], "size": r["size"], "device": r["device"], "ours": r["impl"], "baseline": base,
                        "ours_peak_mb": r["peak_mb"], "baseline_peak_mb": b["peak_mb"],
                        "memory_ratio": r[f"memory_ratio_vs_{base}"]})
    return out


def paper_table(rows: List[dict], cases: List[Case], bandwidth_gbs: float) -> List[dict]:
    """Per case and pass with known bytes or FLOPs: our measured time and GB/s here, and the H100 on paper."""
    out = []
    for case in cases:
        ours = [r for r in rows if r["op"] == case.op and r["size"] == case.size and r["ours"]]
        for key, _ in PASSES:
            nbytes = case.bytes_moved if key == "fwd" else case.bytes_moved_fwd_bwd
            flops = case.flops if key == "fwd" else case.flops_fwd_bwd
            if nbytes is None and flops is None:
                continue
            timed = [r for r in ours if f"{key}_ms" in r]
            if key == "fwd_bwd" and not case.grad_inputs:
                continue
            best = min(timed, key=lambda r: r[f"{key}_ms"]) if timed else None
            ms = best[f"{key}_ms"] if best else None
            gbs = None if ms is None or nbytes is None else nbytes / (ms * 1e-3) / 1e9
            entry = {"op": case.op, "size": case.size, "pass": key, "bytes": nbytes, "flops": flops,
                     "ours": best["impl"] if best else None, "ours_ms": ms, "ours_gbs": gbs,
                     "bandwidth_share": None if gbs is None else gbs / bandwidth_gbs}
            entry.update(h100_paper_us(nbytes, flops))
            out.append(entry)
    return out


def _write_csv(path: str, columns: List[str], rows: List[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def write_results(rows: List[dict], cases: List[Case], meta: Dict[str, object], out_dir: str) -> Dict[str, str]:
    """Write the result files to ``out_dir``; returns {kind: path}. memory.* only when a case measured memory."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {name: os.path.join(out_dir, name) for name in ("bench.json", "bench.csv", "speedups.csv",
                                                            "h100_paper.csv", "speedup.png")}
    with open(paths["bench.json"], "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    _write_csv(paths["bench.csv"], TIMINGS_COLUMNS, rows)
    speedups = speedup_table(rows, cases)
    _write_csv(paths["speedups.csv"], SPEEDUP_COLUMNS, speedups)
    _write_csv(paths["h100_paper.csv"], PAPER_COLUMNS, paper_table(rows, cases, meta["copy_bandwidth_gbs"]))
    plot_speedups(speedups, paths["speedup.png"], meta)
    memory = memory_table(rows, cases)
    if memory:
        paths["memory.csv"] = os.path.join(out_dir, "memory.csv")
        paths["memory.png"] = os.path.join(out_dir, "memory.png")
        _write_csv(paths["memory.csv"], MEMORY_COLUMNS, memory)
        plot_memory(memory, paths["memory.png"])
    return paths


def _times(ratio: float) -> str:
    """A ratio for a chart label: 3 significant digits, no exponent."""
    return f"{ratio:.3g}x" if ratio < 1000 else f"{ratio:.0f}x"


def ratio_text(value: float) -> str:
    """A ratio for a table: two decimals, or two significant digits below 0.01 (never "0.00x")."""
    return f"{value:.2f}x" if value >= 0.01 else f"{value:.2g}x"


def _cases_with_several_ours(entries: List[dict]) -> set:
    """(op, size) of the cases with more than one of our implementations among ``entries`` (their
    chart labels name which of ours, e.g. cuda and triton on a GPU)."""
    ours: Dict[tuple, set] = {}
    for e in entries:
        ours.setdefault((e["op"], e["size"]), set()).add(e["ours"])
    return {case for case, names in ours.items() if len(names) > 1}


def _label(entry: dict, several_ours: bool) -> str:
    ours = f" {entry['ours']}" if several_ours else ""
    return f"{entry['op']} @ {entry['size']}{ours} vs {entry['baseline']}"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: str, dpi: int = 110, colors: int = 64) -> None:
    """Save and close ``fig`` as a palette PNG: a chart has a few flat colours, so 64 palette entries
    keep it readable at about a third of the bytes of the RGBA file matplotlib writes."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    _pyplot().close(fig)
    buffer.seek(0)
    with Image.open(buffer) as image:
        image.convert("RGB").quantize(colors=colors).save(path, optimize=True)


def plot_speedups(speedups: List[dict], path: str, meta: Dict[str, object]) -> None:
    """One chart: a row per (case, baseline), forward and forward+backward side by side; each row's
    quiet bar above its busy bar; log scale, 1x marked."""
    plt = _pyplot()
    several = _cases_with_several_ours(speedups)
    labels = []
    for e in speedups:
        label = _label(e, (e["op"], e["size"]) in several)
        if label not in labels:
            labels.append(label)
    busy = any(e["busy_speedup"] is not None for e in speedups)
    fig, axes = plt.subplots(1, 2, figsize=(13, 1.9 + 0.32 * max(len(labels), 1)), sharey=True, squeeze=False)
    for ax, (key, title) in zip(axes[0], PASSES):
        entries = {_label(e, (e["op"], e["size"]) in several): e for e in speedups if e["pass"] == key}
        ys = list(range(len(labels)))
        quiet = [entries[l]["quiet_speedup"] if l in entries else 0 for l in labels]
        height = 0.4 if busy else 0.7
        # hatched: a bar behind timings whose calls spread over NOISY_SPREAD (marked in the tables too)
        ax.barh([y - (height / 2 if busy else 0) for y in ys], quiet, height=height, color="#1f77b4", label="quiet",
                hatch=["////" if l in entries and noisy(entries[l]) else "" for l in labels])
        loaded = []
        if busy:
            loaded = [(entries[l]["busy_speedup"] or 0) if l in entries else 0 for l in labels]
            under = [l in entries and entries[l]["retention"] is not None and entries[l]["retention"] < RETENTION_BAR
                     for l in labels]
            ax.barh([y + height / 2 for y in ys], loaded, height=height, color=[
                "#d62728" if u else "#ff7f0e" for u in under],
                hatch=["////" if l in entries and noisy(entries[l], "busy") else "" for l in labels])
            # legend entries for both busy colours, drawn as empty bars
            ax.barh([0], [0], color="#ff7f0e", label=f"busy ({meta.get('busy_processes', 1)} competing CPU process)")
            ax.barh([0], [0], color="#d62728", label=f"busy, under {RETENTION_BAR:.0%} of the quiet speedup")
        ax.barh([0], [0], color="white", edgecolor="black", hatch="////",
                label=f"hatched: its timed calls spread over {NOISY_SPREAD:g}x (noisy)")
        for y, label in zip(ys, labels):
            e = entries.get(label)
            if e is None:
                continue
            text = _times(e["quiet_speedup"])
            if e["busy_speedup"] is not None:
                text += f" / {_times(e['busy_speedup'])}"
            ax.text(max(e["quiet_speedup"], e["busy_speedup"] or 0) * 1.08, y, text, va="center", fontsize=6)
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", linewidth=0.8)
        values = [v for v in quiet + loaded if v > 0]
        if values:
            ax.set_xlim(min(0.5, min(values) / 1.5), max(values) * 4)
        ax.set_title(f"{title}: speedup of ours (x, log scale; >1 = faster)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(axis="x", which="both", alpha=0.3)
    axes[0, 0].set_yticks(list(range(len(labels))), labels)
    axes[0, 0].set_ylim(len(labels) - 0.5, -0.5)  # first row on top, no empty margin
    inches = fig.get_figheight()  # the title and the legend above the axes, on lines of their own
    fig.suptitle(f"dapo_fast speedups on {meta.get('gpu') or meta.get('cpu')}, {meta.get('threads')} threads, "
                 f"torch {meta.get('torch')}", fontsize=10, y=1 - 0.1 / inches, va="top")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.35 / inches))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.65 / inches))
    save_png(fig, path)


def plot_memory(memory: List[dict], path: str) -> None:
    plt = _pyplot()
    several = _cases_with_several_ours(memory)
    labels = [_label(e, (e["op"], e["size"]) in several) for e in memory]
    ratios = [e["memory_ratio"] for e in memory]
    fig, ax = plt.subplots(figsize=(9, 1.2 + 0.32 * len(labels)))
    ax.barh(range(len(labels)), ratios, color="#2ca02c")
    for y, e in enumerate(memory):
        ax.text(e["memory_ratio"] * 1.08, y, f"{e['memory_ratio']:.3g}x ({e['ours_peak_mb']:.3g} vs "
                f"{e['baseline_peak_mb']:.3g} MB)", va="center", fontsize=6)
    ax.set_yticks(list(range(len(labels))), labels)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlim(min(0.5, min(ratios) / 1.5), max(ratios) * 8)
    ax.set_title("peak memory of the baseline / peak memory of ours (x, log scale; >1 = ours uses less)", fontsize=9)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    save_png(fig, path)


def _num(value, spec: str = ".2f", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _si(value: Optional[float]) -> str:
    if value is None:
        return "-"
    for factor, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {unit}"
    return f"{value:.3g}"


def write_markdown(rows: List[dict], cases: List[Case], meta: Dict[str, object], prefix: str,
                   paths: Dict[str, str]) -> str:
    """The published report ``prefix``.md, linking the files written to the folder ``prefix``/."""
    md_path = prefix.rstrip("/") + ".md"
    base = os.path.dirname(os.path.abspath(md_path))

    def link(kind):
        return os.path.relpath(os.path.abspath(paths[kind]), base)

    busy = bool(meta.get("busy_processes"))
    speedups = speedup_table(rows, cases)
    memory = memory_table(rows, cases)
    lines = ["# Benchmarks", "",
             f"Every number on this page comes from one run of `{meta.get('command') or 'dapo-fast bench'}` "
             f"(run time {meta['seconds'] / 60:.1f} min, {meta['date']}); rerun that command (from the repository root) to regenerate the page "
             f"and its files. Times are medians of {meta['repeats']} calls after a warm-up call; a speedup is the "
             f"baseline's time over ours, measured side by side in the same process. Sizes: "
             + ("the `--quick` cases only (the small sizes; the cases at the papers' sizes are not in this run)."
                if meta.get("quick") else "every case, the papers' sizes included.")
             + (f" Only these implementations: {', '.join(meta['impls'])}." if meta.get("impls") else ""), "",
             "## Machine", "", "| | |", "|---|---|",
             f"| CPU | {meta['cpu']} ({meta['logical_cores']} logical cores) |"]
    if meta.get("gpu"):
        lines.append(f"| GPU | {meta['gpu']} |")
    build = meta.get("build_info")
    lines += [f"| torch threads | {meta['threads']} |", f"| torch | {meta['torch']} (Python {meta['python']}) |",
              f"| dapo_fast | {meta['dapo_fast']}" + (f", build {json.dumps(build)}" if build else "") + " |",
              f"| device benchmarked | {meta['device']} |",
              f"| copy bandwidth, measured in this run | {meta['copy_bandwidth_gbs']:.1f} GB/s (read + write of a "
              f"256 MB tensor copy) |"]
    load_start, load_end = meta.get("load_average_start"), meta.get("load_average_end")
    if load_start is not None:
        lines.append(f"| load average (1 min), start / end of the run | {load_start:.2f} / {_num(load_end)} "
                     f"(runnable processes, this run's included) |")
    if busy:
        lines.append(f"| busy condition | {meta['busy_processes']} competing CPU-bound process(es) started by the "
                     f"runner, measured right after each case's quiet measurements and stopped after them |")
    if load_start is not None and load_start >= 0.5 * meta["logical_cores"]:
        lines += ["", f"**The machine was not idle**: its load average was {load_start:.2f} on "
                  f"{meta['logical_cores']} logical cores when the run started, before this run's own work. "
                  "\"Quiet\" here means without the runner's competitor, not on an idle machine"
                  + (", and the busy measurements add one more process to an already loaded machine: the "
                     "retentions below do not measure what one competitor costs on an otherwise idle machine" if busy
                     else "") + "."]
    lines += ["", "## Speedups", "",
              f"![speedup of ours against each baseline]({link('speedup.png')})", ""]
    if busy:
        cores, k = meta["logical_cores"], meta["busy_processes"]
        bound = ""
        if meta["threads"] >= cores and cores / (cores + k) < RETENTION_BAR:
            bound = (f" Against a baseline that runs on one thread, a kernel on all {cores} cores cannot reach "
                     f"it under fair scheduling: with {k} competing process(es) its threads get {cores}/{cores + k} "
                     f"of the machine while the baseline keeps a whole core, so the best retention there is "
                     f"{cores / (cores + k):.0%}.")
        lines += [f"Retention = busy speedup / quiet speedup (the same baseline, the same run); the bar for "
                  f"multi-threaded CPU kernels is {RETENTION_BAR:.0%}. Rows below it are marked **below**.{bound}",
                  ""]
    head = ["op", "size", "ours", "baseline", "fwd", "fwd+bwd"]
    if busy:
        head = ["op", "size", "ours", "baseline", "fwd quiet", "fwd busy", "fwd retention", "fwd+bwd quiet",
                "fwd+bwd busy", "fwd+bwd retention"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    grouped: Dict[tuple, Dict[str, dict]] = {}
    for e in speedups:
        grouped.setdefault((e["op"], e["size"], e["ours"], e["baseline"]), {})[e["pass"]] = e

    def retention(e):
        if e is None or e["retention"] is None:
            return "-"
        mark = " **below**" if e["retention"] < RETENTION_BAR else ""
        return f"{100 * e['retention']:.0f}%{mark}" + (NOISY_MARK if noisy(e) or noisy(e, "busy") else "")

    def ratio(e, which):
        value = e and e[f"{which}_speedup"]
        return "-" if value is None else ratio_text(value) + (NOISY_MARK if noisy(e, which) else "")

    for (op, size, ours, baseline), by_pass in grouped.items():
        cells = [op, size, ours, baseline]
        for e in (by_pass.get("fwd"), by_pass.get("fwd_bwd")):
            cells += [ratio(e, "quiet"), ratio(e, "busy"), retention(e)] if busy else [ratio(e, "quiet")]
        lines.append("| " + " | ".join(cells) + " |")
    counts = f"{sum(noisy(e) for e in speedups)} of {len(speedups)} quiet"
    if busy:
        counts += f" and {sum(noisy(e, 'busy') for e in speedups)} of {len(speedups)} busy"
    spread_note = (f"{NOISY_MARK}: the slowest of the timed calls behind this speedup (ours or the baseline's) took "
                   f"more than {NOISY_SPREAD:g}x the fastest, so its median may be an interrupted call ({counts} "
                   "speedups of this run); the spreads are in speedups.csv.")
    lines += ["", spread_note]
    if busy:
        measured = [e for e in speedups if e["retention"] is not None]
        below = [e for e in measured if e["retention"] < RETENTION_BAR]
        lines += ["", f"{len(below)} of {len(measured)} (ours, baseline, pass) retentions are under the "
                  f"{RETENTION_BAR:.0%} bar" + (":" if below else "."), ""]
        lines += [f"- {e['op']} @ {e['size']}, {e['ours']} vs {e['baseline']}, "
                  f"{e['pass'].replace('fwd_bwd', 'fwd+bwd')}: {ratio_text(e['quiet_speedup'])} quiet, "
                  f"{ratio_text(e['busy_speedup'])} busy ({100 * e['retention']:.0f}%)"
                  + (f" {NOISY_MARK}" if noisy(e) or noisy(e, "busy") else "") for e in below]
        steady = [e for e in below if not (noisy(e) or noisy(e, "busy"))]
        if below:
            lines += ["", f"Of these, {len(steady)} rest on timings whose calls all stayed within "
                      f"{NOISY_SPREAD:g}x of each other (no {NOISY_MARK})."]
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Implementations that did not run:", ""]
        lines += [f"- {r['op']} @ {r['size']}, {r['impl']}: `{r['error']}`" for r in errors]
    if memory:
        lines += ["", "## Memory", "", f"![peak memory ratios]({link('memory.png')})", "",
                  "Peak bytes allocated by one forward+backward (CPU: the profiler's allocation records; CUDA: the "
                  "caching allocator's peak).", "",
                  "| op | size | ours | baseline | ours MB | baseline MB | less memory |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {e['op']} | {e['size']} | {e['ours']} | {e['baseline']} | {e['ours_peak_mb']:.2f} | "
                  f"{e['baseline_peak_mb']:.2f} | {e['memory_ratio']:.2f}x |" for e in memory]
    paper = paper_table(rows, cases, meta["copy_bandwidth_gbs"])
    lines += ["", "## Bytes, FLOPs and an H100 on paper", "",
              "Bytes are the minimal traffic of the pass (every input read once, every output written once); FLOPs "
              "count a multiply-add as 2. **The H100 columns are arithmetic, not measurements**: the bytes at "
              f"{H100_HBM_BYTES_PER_S / 1e12:.2f} TB/s (HBM3), the FLOPs at {H100_FP32_FLOPS_PER_S / 1e12:.0f} TFLOP/s "
              f"(FP32, no tensor cores) and at {H100_BF16_DENSE_FLOPS_PER_S / 1e12:.0f} TFLOP/s (dense BF16 tensor "
              "cores), H100 SXM5 datasheet rates; \"paper\" is max(memory, FP32), a lower bound for our FP32 kernels "
              "that ignores launch latency (a few microseconds per kernel). \"ours\" is the fastest of our "
              "implementations measured here, with its GB/s and that as a share of this machine's copy bandwidth.", "",
              "| op | size | pass | bytes | FLOPs | ours here | GB/s here (% of copy) | H100 memory | H100 FP32 | "
              "H100 BF16 | H100 paper |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in paper:
        share = "-" if e["bandwidth_share"] is None else f"{e['ours_gbs']:.1f} ({100 * e['bandwidth_share']:.0f}%)"
        lines.append(f"| {e['op']} | {e['size']} | {e['pass'].replace('fwd_bwd', 'fwd+bwd')} | {_si(e['bytes'])}B | "
                     f"{_si(e['flops'])} | {_num(e['ours_ms'], '.3f')} ms | {share} | "
                     f"{_num(e['h100_memory_us'], '.2f')} us | {_num(e['h100_fp32_us'], '.2f')} us | "
                     f"{_num(e['h100_bf16_us'], '.3f')} us | {_num(e['h100_paper_us'], '.2f')} us |")
    lines += ["", "## Files", "",
              "Written by the same run beside this page (fixed columns; `bench.json` also holds every measured "
              "row and the machine description):", ""]
    lines += [f"- [{os.path.basename(p)}]({link(k)})" for k, p in paths.items()]
    lines.append("")
    with open(md_path, "w") as f:
        f.write("\n".join(lines))
    return md_path
