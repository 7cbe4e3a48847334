"""The benchmark runner: timings, speedups, the busy mode's competitor, devices, and the report.

Nothing here asserts a time: the cases are tiny fakes, and what is checked is what the runner
derives from whatever times it measured."""
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from dapo_fast.bench import report, runner
from dapo_fast.bench.registry import Case, all_cases, backend_impls, impl_device_types, to_device
from dapo_fast.cli import main as cli_main


def toy_case(**overrides):
    def make():
        return {"x": torch.randn(64, 64, requires_grad=True)}

    fields = dict(
        op="toy", size="64", make_inputs=make,
        impls={"ours": lambda i: i["x"] * 2, "slow": lambda i: (i["x"] @ torch.eye(64)) * 2,
               "broken": lambda i: (_ for _ in ()).throw(RuntimeError("no kernel"))},
        ours=["ours"], baselines=["slow"], grad_inputs=["x"], bytes_moved=2 * 64 * 64 * 4,
        bytes_moved_fwd_bwd=3 * 64 * 64 * 4, measure_memory=True,
    )
    fields.update(overrides)
    return Case(**fields)


def test_run_case_times_every_impl_and_computes_speedups():
    case = toy_case()
    rows = {r["impl"]: r for r in runner.run_case(case, repeats=2)}
    assert rows["ours"]["fwd_ms"] > 0 and rows["ours"]["fwd_bwd_ms"] > 0
    ratio = rows["ours"]["speedup_fwd_vs_slow"]
    assert abs(ratio - rows["slow"]["fwd_ms"] / rows["ours"]["fwd_ms"]) < 1e-9
    assert rows["ours"]["fwd_gbs"] > 0
    fwd_bwd_gbs = case.bytes_moved_fwd_bwd / (rows["ours"]["fwd_bwd_ms"] * 1e-3) / 1e9
    assert abs(rows["ours"]["fwd_bwd_gbs"] - fwd_bwd_gbs) < 1e-9 * fwd_bwd_gbs
    assert rows["ours"]["peak_mb"] > 0 and rows["ours"]["memory_ratio_vs_slow"] > 0
    assert rows["ours"]["fwd_spread"] >= 1 and rows["slow"]["fwd_bwd_spread"] >= 1  # slowest / fastest call
    assert "no kernel" in rows["broken"]["error"]  # reported, not fatal
    assert not any(k.startswith("busy_") or k.startswith("retention_") for r in rows.values() for k in r)


def test_timed_calls_give_one_time_per_repeat_after_the_warmup():
    calls = []
    times = runner.timed_calls_ms(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and len(times) == 4 and all(t >= 0 for t in times)
    assert len(runner.timed_calls_ms(lambda: time.sleep(0.02), repeats=4, slow_seconds=0.01)) == 1  # slow: once


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting for a parent that does not reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_busy_mode_runs_its_competitor_only_around_the_busy_timings(monkeypatch):
    started = []
    real = runner.competing_load

    def recording(processes):
        with real(processes) as procs:
            started.extend(procs)
            yield procs

    monkeypatch.setattr(runner, "competing_load", runner.contextlib.contextmanager(recording))
    seen = []  # per call of ours: was a competitor running?

    def ours(i):
        seen.append(any(p.poll() is None for p in started))
        return i["x"] * 2

    case = toy_case(impls={"ours": ours, "slow": lambda i: (i["x"] @ torch.eye(64)) * 2}, measure_memory=False)
    rows = {r["impl"]: r for r in runner.run_case(case, repeats=2, busy=2)}
    assert len(started) == 2
    assert all(p.returncode is not None for p in started)  # stopped and reaped
    assert not any(_alive(p.pid) for p in started)
    quiet_calls = 2 * (1 + 2)  # forward and forward+backward, one warm-up and two timed calls each
    assert seen == [False] * quiet_calls + [True] * quiet_calls
    r = rows["ours"]
    for key in ("fwd", "fwd_bwd"):
        assert r[f"busy_{key}_ms"] > 0
        busy_ratio = rows["slow"][f"busy_{key}_ms"] / r[f"busy_{key}_ms"]
        assert r[f"busy_speedup_{key}_vs_slow"] == pytest.approx(busy_ratio)
        assert r[f"retention_{key}_vs_slow"] == pytest.approx(busy_ratio / r[f"speedup_{key}_vs_slow"])


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_competitor_is_stopped_on_ctrl_c_and_errors(stop):
    with pytest.raises(stop):
        with runner.competing_load(1) as procs:
            assert procs[0].poll() is None
            raise stop()
    assert procs[0].returncode is not None and not _alive(procs[0].pid)


def test_competitor_dies_with_a_killed_runner(tmp_path):
    # a runner killed without any cleanup (SIGKILL) leaves no competitor behind
    script = textwrap.dedent("""
        import sys, time
        from dapo_fast.bench.runner import competing_load
        with competing_load(1) as procs:
            print(procs[0].pid, flush=True)
            time.sleep(60)
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd()] + sys.path))
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_impls_are_chosen_by_the_device_their_backend_runs_on():
    assert impl_device_types("dapo_fast[cpu]") == ("cpu",)
    assert impl_device_types("dapo_fast[cpu,keep_channels_last]") == ("cpu",)
    assert impl_device_types("dapo_fast[cuda]") == ("cuda",)
    assert impl_device_types("dapo_fast[triton]") == ("cuda",)
    assert impl_device_types("dapo_fast[auto]") == ("cpu", "cuda")
    assert impl_device_types("torchvision") == ("cpu", "cuda")
    calls = []
    impls = backend_impls(lambda i, b: calls.append(b), ("cpu", "cuda", "triton"))
    impls["reference"] = lambda i: calls.append("reference")
    case = Case(op="toy", size="s", make_inputs=lambda device="cpu": {"device": device}, impls=impls,
                ours=["dapo_fast[cpu]", "dapo_fast[cuda]", "dapo_fast[triton]"], baselines=["reference"])
    assert case.devices() == ("cpu", "cuda")
    assert list(case.impls_on("cpu")) == ["dapo_fast[cpu]", "reference"]
    assert list(case.impls_on("cuda:1")) == ["dapo_fast[cuda]", "dapo_fast[triton]", "reference"]
    for fn in case.impls_on("cuda").values():
        fn({})
    assert calls == ["cuda", "triton", "reference"]
    assert case.build_inputs("cuda:1") == {"device": "cuda:1"}  # the case builds where it is asked


def test_a_case_without_a_device_argument_is_cpu_only():
    case = toy_case()
    assert case.devices() == ("cpu",)
    assert set(case.build_inputs("cpu")) == {"x"}
    with pytest.raises(ValueError, match="cpu"):
        case.build_inputs("cuda")


def test_run_case_builds_inputs_on_the_requested_device():
    built, ran = [], []

    def make(device="cpu"):
        built.append(device)
        return to_device({"x": torch.randn(8, requires_grad=True)}, device)

    impls = backend_impls(lambda i, b: ran.append((b, i["x"].device.type)) or i["x"] * 2, ("cpu", "cuda"))
    impls["reference"] = lambda i: ran.append(("reference", i["x"].device.type)) or i["x"] * 3
    case = Case(op="toy", size="s", make_inputs=make, impls=impls, ours=list(backend_impls(None, ("cpu", "cuda"))),
                baselines=["reference"], grad_inputs=["x"])
    rows = runner.run_case(case, repeats=1, device="cpu")
    assert built == ["cpu"]
    assert {r["impl"] for r in rows} == {"dapo_fast[cpu]", "reference"}
    assert {r["device"] for r in rows} == {"cpu"}
    assert set(ran) == {("cpu", "cpu"), ("reference", "cpu")}
    assert "speedup_fwd_bwd_vs_reference" in {k for r in rows for k in r}


def test_to_device_moves_nested_tensors_and_keeps_leaves_and_layout():
    x = torch.randn(2, 3, 4, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    q = torch.randn(2, 6, 3, 4).transpose(1, 2)
    inputs = {"x": x, "q": q, "lists": [torch.ones(2), (torch.zeros(1),)], "scalar": 3}
    assert to_device(inputs, "cpu") is inputs
    moved = to_device(inputs, "meta")  # a non-CPU device without a GPU
    assert moved["x"].device.type == "meta" and moved["x"].is_leaf and moved["x"].requires_grad
    assert moved["x"].stride() == x.stride() and moved["q"].stride() == q.stride()
    assert not moved["q"].requires_grad
    assert moved["lists"][0].device.type == "meta" and isinstance(moved["lists"][1], tuple)
    assert moved["lists"][1][0].device.type == "meta" and moved["scalar"] == 3


def test_device_cuda_without_cuda_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(runner.BenchError, match="no CUDA device"):
        runner.check_device("cuda")
    assert cli_main(["bench", "--quick", "--device", "cuda", "--repeats", "1"]) == 2
    err = capsys.readouterr().err
    assert "dapo-fast bench: error: --device cuda: no CUDA device" in err
    assert runner.check_device("cpu") == "cpu"
    with pytest.raises(runner.BenchError, match="cpu or cuda"):
        runner.check_device("mps")


def test_every_registered_case_is_well_formed():
    cases = all_cases()
    assert any(c.op == "roi_align" for c in cases)
    for c in cases:
        assert set(c.ours) <= set(c.impls), c.op
        assert set(c.baselines) <= set(c.impls), c.op
        assert c.ours, c.op
        for device in c.devices():  # on every device it builds on, one of ours runs
            assert set(c.ours) & set(c.impls_on(device)), (c.op, c.size, device)
        for value in (c.bytes_moved, c.bytes_moved_fwd_bwd, c.flops, c.flops_fwd_bwd):
            assert value is None or (isinstance(value, int) and value > 0), (c.op, c.size)
    for op in ("roi_align", "momentum_update_", "cross_attention_probs_mean", "pseudo_label_contrastive_loss"):
        assert {"dapo_fast[cuda]", "dapo_fast[triton]"} <= set(next(c for c in cases if c.op == op).ours), op


def test_cli_bench_writes_table_csv_json_png(tmp_path, capsys):
    out = tmp_path / "results"
    cli_main(["bench", "--ops", "roi_align", "--quick", "--repeats", "1",
              "--impls", "dapo_fast[cpu]", "torchvision", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "copy bandwidth measured in this run" in printed and "vs torchvision" in printed
    assert "| roi_align | small | dapo_fast[cpu] |" in printed  # a Markdown table (tools/gpu_check.sh greps it)
    for name in ("bench.csv", "bench.json", "speedups.csv", "h100_paper.csv", "speedup.png"):
        assert os.path.getsize(out / name) > 0
    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["copy_bandwidth_gbs"] > 0
    assert {r["impl"] for r in data["rows"]} == {"dapo_fast[cpu]", "torchvision"}


def test_cli_unknown_op_is_a_clear_error(capsys):
    assert cli_main(["bench", "--ops", "no_such_op", "--repeats", "1"]) == 2
    assert "no benchmark case for ['no_such_op']" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value", [("--busy", "-1"), ("--threads", "-2"), ("--repeats", "0")])
def test_cli_out_of_range_counts_are_clear_errors(flag, value, capsys):
    assert cli_main(["bench", "--quick", flag, value]) == 2
    assert f"dapo-fast bench: error: {flag} must be at least" in capsys.readouterr().err


def test_peak_memory_counts_each_allocation_once():
    # zeros -> empty and matmul -> mm are nested ops; the 4 MB buffers must count once each
    a = torch.ones(1024, 1024)
    peak = runner.peak_memory_bytes(lambda: torch.zeros(1024, 1024) @ a)
    assert 8 * 2**20 <= peak < 9 * 2**20


# ---------------------------------------------------------------- the report

def _fake_run():
    """Rows as run_case makes them (hand-made times), a case with bytes and FLOPs, a memory case."""
    cases = [Case(op="op_a", size="s1", make_inputs=dict, impls={"ours": None, "peer": None, "ref": None},
                  ours=["ours"], baselines=["peer", "ref"], grad_inputs=["x"], bytes_moved=3_350_000_000,
                  bytes_moved_fwd_bwd=6_700_000_000, flops=67_000_000_000, flops_fwd_bwd=989_000_000_000),
             Case(op="op_b", size="s2", make_inputs=dict, impls={"ours": None, "code_form": None},
                  ours=["ours"], baselines=["code_form"], measure_memory=True)]
    rows = [
        {"op": "op_a", "size": "s1", "device": "cpu", "impl": "ours", "ours": True, "fwd_ms": 2.0, "fwd_bwd_ms": 4.0,
         "busy_fwd_ms": 4.0, "busy_fwd_bwd_ms": 5.0},
        {"op": "op_a", "size": "s1", "device": "cpu", "impl": "peer", "ours": False, "fwd_ms": 20.0,
         "fwd_bwd_ms": 40.0, "busy_fwd_ms": 22.0, "busy_fwd_bwd_ms": 44.0},
        {"op": "op_a", "size": "s1", "device": "cpu", "impl": "ref", "ours": False, "error": "RuntimeError: too big"},
        {"op": "op_b", "size": "s2", "device": "cpu", "impl": "ours", "ours": True, "fwd_ms": 1.0, "busy_fwd_ms": 1.0,
         "peak_mb": 2.0, "fwd_spread": 3.0, "busy_fwd_spread": 1.5},
        {"op": "op_b", "size": "s2", "device": "cpu", "impl": "code_form", "ours": False, "fwd_ms": 3.0,
         "busy_fwd_ms": 3.0, "peak_mb": 50.0},
    ]
    for case in cases:
        runner.add_ratios(case, [r for r in rows if r["op"] == case.op])
    meta = {"cpu": "Test CPU", "logical_cores": 2, "threads": 2, "torch": torch.__version__, "python": "3",
            "dapo_fast": "0", "device": "cpu", "copy_bandwidth_gbs": 10.0, "date": "today", "repeats": 1,
            "busy_processes": 1, "seconds": 90.0, "command": "dapo-fast bench --busy --report docs/benchmarks",
            "quick": True, "load_average_start": 3.0, "load_average_end": 3.5}
    return rows, cases, meta


def _csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_report_writes_fixed_csv_columns_pngs_and_the_markdown(tmp_path):
    rows, cases, meta = _fake_run()
    prefix = str(tmp_path / "docs" / "benchmarks")
    paths = report.write_results(rows, cases, meta, prefix)
    md = report.write_markdown(rows, cases, meta, prefix, paths)
    assert md == prefix + ".md"
    for name in ("bench.csv", "bench.json", "speedups.csv", "memory.csv", "h100_paper.csv", "speedup.png",
                 "memory.png"):
        assert os.path.exists(os.path.join(prefix, name)), name
    for png in ("speedup.png", "memory.png"):
        with open(os.path.join(prefix, png), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    columns, timings = _csv(os.path.join(prefix, "bench.csv"))
    assert columns == report.TIMINGS_COLUMNS and len(timings) == 5
    assert timings[2]["error"] == "RuntimeError: too big"
    columns, speedups = _csv(os.path.join(prefix, "speedups.csv"))
    assert columns == report.SPEEDUP_COLUMNS
    op_b = next(s for s in speedups if s["op"] == "op_b")
    assert (float(op_b["quiet_spread"]), float(op_b["busy_spread"])) == (3.0, 1.5)
    fwd = next(s for s in speedups if s["op"] == "op_a" and s["pass"] == "fwd")
    assert (float(fwd["quiet_speedup"]), float(fwd["busy_speedup"]), float(fwd["retention"])) == (10.0, 5.5, 0.55)
    assert {(s["op"], s["baseline"], s["pass"]) for s in speedups} == {
        ("op_a", "peer", "fwd"), ("op_a", "peer", "fwd_bwd"), ("op_b", "code_form", "fwd")}
    columns, memory = _csv(os.path.join(prefix, "memory.csv"))
    assert columns == report.MEMORY_COLUMNS and float(memory[0]["memory_ratio"]) == 25.0
    text = open(md).read()
    assert "`dapo-fast bench --busy --report docs/benchmarks`" in text and "1.5 min" in text
    assert "Test CPU (2 logical cores)" in text and "10.0 GB/s" in text and torch.__version__ in text
    assert "](benchmarks/speedup.png)" in text and "](benchmarks/memory.png)" in text
    assert "| op_a | s1 | ours | peer | 10.00x | 5.50x | 55% **below** | 10.00x | 8.80x | 88% |" in text
    assert "on paper" in text and "not measurements" in text
    assert "op_a @ s1, ref: `RuntimeError: too big`" in text
    # retentions 55% (op_a fwd), 88% (op_a fwd+bwd), 100% (op_b fwd): one under the bar, listed
    assert "1 of 3 (ours, baseline, pass) retentions are under the 80% bar:" in text
    assert "- op_a @ s1, ours vs peer, fwd: 10.00x quiet, 5.50x busy (55%)" in text
    # op_b's quiet calls spread 3x (over the 2x limit): its quiet speedup and retention are marked
    assert "| op_b | s2 | ours | code_form | 3.00x† | 3.00x | 100%† |" in text
    assert "Of these, 1 rest on timings whose calls all stayed within 2x of each other" in text
    # what the numbers were measured under is said beside them
    assert "`--quick` cases only" in text
    assert "| 3.00 / 3.50 " in text and "**The machine was not idle**" in text


def test_report_on_an_idle_machine_says_nothing_about_load(tmp_path):
    rows, cases, meta = _fake_run()
    meta.update(load_average_start=0.1, quick=False)
    prefix = str(tmp_path / "benchmarks")
    paths = report.write_results(rows, cases, meta, prefix)
    text = open(report.write_markdown(rows, cases, meta, prefix, paths)).read()
    assert "not idle" not in text and "the papers' sizes included" in text


def test_h100_paper_times_from_bytes_and_flops_by_hand(tmp_path):
    rows, cases, meta = _fake_run()
    paper = {(e["op"], e["pass"]): e for e in report.paper_table(rows, cases, meta["copy_bandwidth_gbs"])}
    assert set(paper) == {("op_a", "fwd"), ("op_a", "fwd_bwd")}  # op_b names neither bytes nor FLOPs
    fwd = paper[("op_a", "fwd")]
    # 3.35 GB at 3.35 TB/s = 1 ms; 67 GFLOP at 67 TFLOP/s = 1 ms; at 989 TFLOP/s = 67.745 us
    assert fwd["h100_memory_us"] == pytest.approx(1000.0)
    assert fwd["h100_fp32_us"] == pytest.approx(1000.0)
    assert fwd["h100_bf16_us"] == pytest.approx(67e9 / 989e12 * 1e6)
    assert fwd["h100_paper_us"] == pytest.approx(1000.0)
    # ours here: 3.35 GB in 2 ms = 1675 GB/s, 167.5 times the 10 GB/s copy bandwidth
    assert fwd["ours"] == "ours" and fwd["ours_ms"] == 2.0
    assert fwd["ours_gbs"] == pytest.approx(1675.0) and fwd["bandwidth_share"] == pytest.approx(167.5)
    both = paper[("op_a", "fwd_bwd")]
    assert both["h100_memory_us"] == pytest.approx(2000.0)      # 6.7 GB / 3.35 TB/s
    assert both["h100_fp32_us"] == pytest.approx(989e9 / 67e12 * 1e6)  # 14.76 ms: compute-bound
    assert both["h100_bf16_us"] == pytest.approx(1000.0)
    assert both["h100_paper_us"] == pytest.approx(both["h100_fp32_us"])
    _, written = _csv(report.write_results(rows, cases, meta, str(tmp_path))["h100_paper.csv"])
    assert float(written[0]["h100_fp32_us"]) == pytest.approx(1000.0)


def test_cli_busy_report_from_one_command(tmp_path, monkeypatch, capsys):
    case = toy_case(measure_memory=False)
    case.impls.pop("broken")
    monkeypatch.setattr(runner, "all_cases", lambda: [case])
    prefix = tmp_path / "docs" / "benchmarks"
    assert cli_main(["bench", "--busy", "--repeats", "1", "--threads", "1", "--report", str(prefix)]) == 0
    text = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert f"dapo-fast bench --busy --repeats 1 --threads 1 --report {prefix}" in text
    assert "| toy | 64 | ours | slow |" in text and "fwd retention" in text
    meta = json.loads((prefix / "bench.json").read_text())["meta"]
    assert meta["busy_processes"] == 1 and meta["threads"] == 1 and meta["copy_bandwidth_gbs"] > 0
    assert "busy" in capsys.readouterr().out


def test_cli_busy_report_of_real_cases_and_no_competitor_left(tmp_path, monkeypatch):
    # two cheap real cases, one timed call each: every report file with its fixed columns, and the
    # competitor process that the busy pass started is gone (by pid) when the command returns
    started = []
    real = runner.competing_load

    def recording(processes):
        with real(processes) as procs:
            started.extend(procs)
            assert all(_alive(p.pid) for p in procs)
            yield procs

    monkeypatch.setattr(runner, "competing_load", runner.contextlib.contextmanager(recording))
    prefix = tmp_path / "docs" / "benchmarks"
    argv = ["bench", "--ops", "box_iou", "weighted_smooth_l1", "--quick", "--repeats", "1", "--busy",
            "--impls", "dapo_fast[cpu]", "reference", "--report", str(prefix)]
    assert cli_main(argv) == 0
    assert len(started) == 2  # one competitor per case, started for its busy pass
    assert not any(_alive(p.pid) for p in started)
    for name, columns in (("bench.csv", report.TIMINGS_COLUMNS), ("speedups.csv", report.SPEEDUP_COLUMNS),
                          ("h100_paper.csv", report.PAPER_COLUMNS)):
        header, written = _csv(prefix / name)
        assert header == columns and written, name
    _, speedups = _csv(prefix / "speedups.csv")
    assert {(s["op"], s["ours"], s["baseline"]) for s in speedups} == {
        ("box_iou", "dapo_fast[cpu]", "reference"), ("weighted_smooth_l1", "dapo_fast[cpu]", "reference")}
    for s in speedups:
        assert float(s["retention"]) == pytest.approx(float(s["busy_speedup"]) / float(s["quiet_speedup"]))
    _, paper = _csv(prefix / "h100_paper.csv")
    assert {(p["op"], p["pass"]) for p in paper} == {("box_iou", "fwd"), ("weighted_smooth_l1", "fwd"),
                                                     ("weighted_smooth_l1", "fwd_bwd")}
    assert all(float(p["bytes"]) > 0 and float(p["flops"]) > 0 and float(p["h100_paper_us"]) > 0 for p in paper)
    with open(prefix / "speedup.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert not (prefix / "memory.csv").exists()  # neither case measures memory
    text = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert "dapo-fast " + shlex.join(argv) in text  # the command as a shell would take it back
    assert "| box_iou | reir-b10-50x50 | dapo_fast[cpu] | reference |" in text and "fwd retention" in text
    assert "Only these implementations: dapo_fast[cpu], reference." in text


def test_report_ratios_keep_their_digits_below_one_hundredth():
    assert report.ratio_text(10.0) == "10.00x" and report.ratio_text(0.0123) == "0.01x"
    assert report.ratio_text(0.0012) == "0.0012x"  # a stalled kernel is shown as what it is, not "0.00x"
