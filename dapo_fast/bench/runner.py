"""`dapo-fast bench`: times every implementation of every case side by side in one process.

For each case: build inputs once (on the requested device), then per implementation a warm-up
call and the median of `repeats` timed calls, forward (under no_grad) and forward+backward. With
``busy`` the same measurements are repeated right after, case by case, while competing CPU-bound
processes started by the runner run beside it (as a data loader or a second job would), so each
speedup is reported quiet and busy from the same run, with the busy/quiet retention. The machine's
copy bandwidth is measured in the same run so memory-bound kernels are reported as a fraction of
it. Results go to stdout (a Markdown table) and to files (see :mod:`dapo_fast.bench.report`).
"""
import contextlib
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional

import torch

from dapo_fast.bench.registry import Case, all_cases, backward_of

TIMED_KEYS = ("fwd_ms", "fwd_bwd_ms")
BUSY_PREFIX = "busy_"


class BenchError(ValueError):
    """A benchmark request that cannot run (no such op, no CUDA device, ...)."""


def synchronizer(device: str) -> Callable[[], None]:
    """What makes a timed call's work finish before the clock stops on ``device``."""
    if torch.device(device).type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def timed_calls_ms(fn: Callable[[], object], repeats: int, warmup: int = 1, slow_seconds: float = 2.0,
                   sync: Callable[[], None] = lambda: None) -> List[float]:
    """Wall times in ms of `repeats` calls after `warmup` calls. A call slower than `slow_seconds`
    (the eager references at full size) is timed once more instead of `repeats` times."""
    sync()
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    sync()
    if warmup and (time.perf_counter() - start) / warmup > slow_seconds:
        repeats = 1
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _median_ms(fn: Callable[[], object], repeats: int, **kwargs) -> float:
    return statistics.median(timed_calls_ms(fn, repeats, **kwargs))


def copy_bandwidth_gbs(megabytes: int = 256, repeats: int = 5, device: str = "cpu") -> float:
    """Bytes read + written per second by a large tensor copy (this machine's memory ceiling)."""
    src = torch.ones(megabytes * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    ms = _median_ms(lambda: dst.copy_(src), repeats, sync=synchronizer(device))
    return 2 * src.numel() * 4 / (ms * 1e-3) / 1e9


def peak_memory_bytes(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak bytes held by torch allocations made while fn runs. CPU: from the profiler's raw
    allocation records ("[memory]" events), so a nested op (zeros -> empty, matmul -> mm) is
    counted once; CUDA: the caching allocator's peak above what was allocated before."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before

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


# A CPU-bound competitor: one Python process spinning on integer arithmetic. It dies with the
# runner even when the runner is killed without cleanup (Linux: PR_SET_PDEATHSIG; elsewhere it
# notices its parent is gone within milliseconds).
_COMPETITOR = r"""
import ctypes, os, signal, sys
parent = int(sys.argv[1])
try:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != parent:
    sys.exit(0)
sys.stdout.write("ready\n")
sys.stdout.flush()
x = 1
while os.getppid() == parent:
    for _ in range(20000):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
"""


@contextlib.contextmanager
def competing_load(processes: int = 1) -> Iterator[List[subprocess.Popen]]:
    """Run ``processes`` CPU-bound competitor processes for the duration of the block; they are
    running (past start-up) when the block begins and stopped and reaped when it ends, also on an
    exception or Ctrl-C."""
    procs: List[subprocess.Popen] = []
    try:
        for _ in range(processes):
            procs.append(subprocess.Popen([sys.executable, "-S", "-c", _COMPETITOR, str(os.getpid())],
                                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE))
        for proc in procs:
            line = proc.stdout.readline()  # returns once the competitor runs its loop (or has exited)
            if line.strip() != b"ready":
                raise RuntimeError(f"the competing CPU process did not start (exit code {proc.poll()})")
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()


def _zero_grads(inputs: Dict[str, object], keys: List[str]) -> None:
    for k in keys:
        t = inputs[k]
        if isinstance(t, torch.Tensor):
            t.grad = None


def _time_impl(case: Case, impl, inputs, repeats: int, sync, prefix: str = "") -> Dict[str, float]:
    """The median time of forward (and forward+backward) as ``<prefix><pass>_ms``, and the spread of
    its timed calls (slowest / fastest) as ``<prefix><pass>_spread``: a spread far above 1 says the
    calls were interrupted (descheduled threads on a loaded machine), so the median is noise-prone."""
    def record(key, times):
        out[prefix + key + "_ms"] = statistics.median(times)
        out[prefix + key + "_spread"] = max(times) / min(times) if min(times) > 0 else None

    out = {}
    with torch.no_grad():
        record("fwd", timed_calls_ms(lambda: impl(inputs), repeats, sync=sync))
    if case.grad_inputs:
        def fwd_bwd():
            _zero_grads(inputs, case.grad_inputs)
            backward_of(impl(inputs))

        record("fwd_bwd", timed_calls_ms(fwd_bwd, repeats, sync=sync))
    return out


def _error_text(err: Exception) -> str:
    lines = str(err).splitlines() or [""]
    return f"{type(err).__name__}: {lines[0][:120]}"


def run_case(case: Case, repeats: int, impl_filter: Optional[List[str]] = None, device: str = "cpu",
             busy: int = 0) -> List[dict]:
    """One row per implementation that applies on ``device`` (and passes ``impl_filter``): times,
    speedups against the case's baselines, GB/s, peak memory; with ``busy`` > 0 the times again
    (``busy_`` keys) with that many competing CPU processes running, the busy speedups and the
    retention (busy speedup / quiet speedup) per baseline."""
    torch.manual_seed(0)
    inputs = case.build_inputs(device)
    sync = synchronizer(device)
    impls = {n: f for n, f in case.impls_on(device).items() if not impl_filter or n in impl_filter}
    rows = []
    for name, impl in impls.items():
        row = {"op": case.op, "size": case.size, "device": device, "impl": name, "ours": name in case.ours}
        try:
            row.update(_time_impl(case, impl, inputs, repeats, sync))
            if case.measure_memory:
                def step():
                    _zero_grads(inputs, case.grad_inputs)
                    out = impl(inputs)
                    if case.grad_inputs:
                        backward_of(out)

                row["peak_mb"] = peak_memory_bytes(step, device) / 2**20
        except Exception as err:  # a baseline that cannot run at this size is reported, not fatal
            row["error"] = _error_text(err)
        rows.append(row)
    if busy:
        with competing_load(busy):
            for row in rows:
                if "error" in row:
                    continue
                try:
                    row.update(_time_impl(case, impls[row["impl"]], inputs, repeats, sync, BUSY_PREFIX))
                except Exception as err:
                    row["error"] = _error_text(err)
    add_ratios(case, rows)
    return rows


def add_ratios(case: Case, rows: List[dict]) -> None:
    """Add to the rows of one case what follows from their times: the speedup of each row against
    each of the case's baselines (quiet and busy), the retention (busy / quiet speedup), the memory
    ratio, and GB/s from the case's bytes."""
    by_name = {r["impl"]: r for r in rows}
    for r in rows:
        for base in case.baselines:
            b = by_name.get(base)
            if b is None or b is r:
                continue
            for key in TIMED_KEYS:
                for prefix in ("", BUSY_PREFIX):
                    if prefix + key in r and prefix + key in b:
                        r[f"{prefix}speedup_{key[:-3]}_vs_{base}"] = b[prefix + key] / r[prefix + key]
                quiet = r.get(f"speedup_{key[:-3]}_vs_{base}")
                busy = r.get(f"{BUSY_PREFIX}speedup_{key[:-3]}_vs_{base}")
                if quiet is not None and busy is not None:
                    r[f"retention_{key[:-3]}_vs_{base}"] = busy / quiet
            if r.get("peak_mb") and "peak_mb" in b:
                r[f"memory_ratio_vs_{base}"] = b["peak_mb"] / r["peak_mb"]
        if case.bytes_moved and "fwd_ms" in r:
            r["fwd_gbs"] = case.bytes_moved / (r["fwd_ms"] * 1e-3) / 1e9
        if case.bytes_moved_fwd_bwd and "fwd_bwd_ms" in r:
            r["fwd_bwd_gbs"] = case.bytes_moved_fwd_bwd / (r["fwd_bwd_ms"] * 1e-3) / 1e9


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def speedup_text(row: dict, baseline: str) -> str:
    """'3.10x/12.0x' (forward / forward+backward), with ' busy 2.9x/11.5x (94%/96%)' in busy runs."""
    def pair(prefix):
        parts = [row.get(f"{prefix}speedup_{p}_vs_{baseline}") for p in ("fwd", "fwd_bwd")]
        return "/".join(f"{v:.2f}x" for v in parts if v is not None)

    text = pair("")
    if any(k.startswith(BUSY_PREFIX) for k in row):
        kept = [row.get(f"retention_{p}_vs_{baseline}") for p in ("fwd", "fwd_bwd")]
        text += f" busy {pair(BUSY_PREFIX)} ({'/'.join(f'{100 * v:.0f}%' for v in kept if v is not None)})"
    return text


def print_table(rows: List[dict], bandwidth: float) -> None:
    """One Markdown line per implementation; GB/s is the case's minimal traffic over the measured
    time (forward, and forward+backward where the case names its traffic) and %bw its share of the
    copy bandwidth. Busy runs add the busy times, and each speedup's busy value and retention."""
    busy = any(k.startswith(BUSY_PREFIX) for r in rows for k in r)
    print(f"\ncopy bandwidth measured in this run: {bandwidth:.1f} GB/s (read + write)\n")
    cols = ["op", "size", "impl", "fwd ms", "fwd+bwd ms"] + (["busy fwd ms", "busy fwd+bwd ms"] if busy else []) + [
        "GB/s (%bw)", "f+b GB/s (%bw)", "speedups (fwd/fwd+bwd)" + (", busy, retention" if busy else ""), "peak MB"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))

    def gbs(value):
        return "-" if value is None else f"{value:.1f} ({100 * value / bandwidth:.0f}%)"

    for r in rows:
        bases = [k.split("_vs_", 1)[1] for k in r if k.startswith("speedup_fwd_vs_")] if r["ours"] else []
        speed = "; ".join(f"vs {b}: {speedup_text(r, b)}" for b in bases)
        if "error" in r:
            speed = (speed + " " if speed else "") + f"[{r['error']}]"
        peak = _fmt(r.get("peak_mb"), ".1f")
        ratios = ", ".join(f"{k.split('_vs_', 1)[1]} {r[k]:.1f}x" for k in r if k.startswith("memory_ratio_vs_"))
        if r["ours"] and ratios:
            peak += f" (less than: {ratios})"
        cells = [r["op"], r["size"], r["impl"], _fmt(r.get("fwd_ms"), ".3f"), _fmt(r.get("fwd_bwd_ms"), ".3f")]
        if busy:
            cells += [_fmt(r.get("busy_fwd_ms"), ".3f"), _fmt(r.get("busy_fwd_bwd_ms"), ".3f")]
        cells += [gbs(r.get("fwd_gbs")), gbs(r.get("fwd_bwd_gbs")), speed, peak]
        print("| " + " | ".join(cells) + " |")


def select_cases(ops: Optional[List[str]], quick: bool, device: str) -> List[Case]:
    """The cases of ``ops`` (all when empty), the quick ones with ``quick``, that run on ``device``."""
    known = all_cases()
    unknown = sorted(set(ops or ()) - {c.op for c in known})
    if unknown:
        raise BenchError(f"--ops: no benchmark case for {unknown} (known: {sorted({c.op for c in known})})")
    cases = [c for c in known if (not ops or c.op in ops) and (c.quick or not quick)]
    kind = torch.device(device).type
    skipped = [c for c in cases if kind not in c.devices()]
    if skipped:
        print(f"[bench] CPU-only cases skipped on {device}: " + ", ".join(f"{c.op} @ {c.size}" for c in skipped))
    cases = [c for c in cases if kind in c.devices()]
    if not cases:
        raise BenchError(f"no benchmark case matches ops={ops} quick={quick} device={device}")
    return cases


def load_average() -> Optional[float]:
    """The machine's 1-minute load average (runnable processes, ours included), or None where the
    system does not report it: how far from idle the "quiet" measurements were."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def check_device(device: str) -> str:
    """``device`` as a torch device string, or BenchError saying why it cannot be benchmarked."""
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise BenchError(f"--device: {err}") from None
    if kind not in ("cpu", "cuda"):
        raise BenchError(f"--device must be cpu or cuda, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise BenchError(f"--device {device}: no CUDA device is available to this torch "
                         f"({torch.__version__}, {built}); run on a machine with an NVIDIA GPU, or use --device cpu")
    return device


def main(ops: Optional[List[str]] = None, quick: bool = False, repeats: int = 5, out_dir: str = "benchmarks/results",
         impls: Optional[List[str]] = None, device: str = "cpu", busy: int = 0, threads: int = 0,
         report: Optional[str] = None, command: str = "") -> List[dict]:
    """Run the cases, print the table, write the result files to ``out_dir`` and, with ``report``
    (a path prefix P), the published report P.md with its files in the folder P/."""
    for name, value, least in (("--repeats", repeats, 1), ("--busy", busy, 0), ("--threads", threads, 0)):
        if value < least:
            raise BenchError(f"{name} must be at least {least}, got {value}")
    device = check_device(device)
    cases = select_cases(ops, quick, device)
    previous_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _run(cases, repeats, out_dir, impls, device, busy, quick, report, command)
    finally:
        torch.set_num_threads(previous_threads)


def _run(cases, repeats, out_dir, impls, device, busy, quick, report, command) -> List[dict]:
    from dapo_fast.bench import report as report_writer

    started = time.time()
    load_before = load_average()
    bandwidth = copy_bandwidth_gbs(device=device)
    rows = []
    for case in cases:
        print(f"[bench] {case.op} @ {case.size} ({device}{', quiet + busy' if busy else ''}) ...", flush=True)
        rows.extend(run_case(case, repeats, impls, device=device, busy=busy))
    print_table(rows, bandwidth)
    meta = report_writer.machine_info(device, bandwidth)
    meta.update(repeats=repeats, busy_processes=busy, quick=quick, seconds=round(time.time() - started, 1),
                impls=impls, command=command, load_average_start=load_before, load_average_end=load_average())
    if report:
        out_dir = report
    paths = report_writer.write_results(rows, cases, meta, out_dir)
    print("\nwrote " + ", ".join(paths.values()))
    if report:
        md = report_writer.write_markdown(rows, cases, meta, report, paths)
        print(f"wrote the report {md}")
    return rows
