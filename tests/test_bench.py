"""The benchmark runner: timings, speedups and the files it writes."""
import json
import os

import torch

from dapo_fast.bench import runner
from dapo_fast.bench.registry import Case, all_cases
from dapo_fast.cli import main as cli_main


def test_run_case_times_every_impl_and_computes_speedups():
    def make():
        return {"x": torch.randn(64, 64, requires_grad=True)}

    case = Case(
        op="toy", size="64", make_inputs=make,
        impls={"ours": lambda i: i["x"] * 2, "slow": lambda i: (i["x"] @ torch.eye(64)) * 2,
               "broken": lambda i: (_ for _ in ()).throw(RuntimeError("no kernel"))},
        ours=["ours"], baselines=["slow"], grad_inputs=["x"], bytes_moved=2 * 64 * 64 * 4,
        bytes_moved_fwd_bwd=3 * 64 * 64 * 4, measure_memory=True,
    )
    rows = {r["impl"]: r for r in runner.run_case(case, repeats=2)}
    assert rows["ours"]["fwd_ms"] > 0 and rows["ours"]["fwd_bwd_ms"] > 0
    ratio = rows["ours"]["speedup_fwd_vs_slow"]
    assert abs(ratio - rows["slow"]["fwd_ms"] / rows["ours"]["fwd_ms"]) < 1e-9
    assert rows["ours"]["fwd_gbs"] > 0
    fwd_bwd_gbs = case.bytes_moved_fwd_bwd / (rows["ours"]["fwd_bwd_ms"] * 1e-3) / 1e9
    assert abs(rows["ours"]["fwd_bwd_gbs"] - fwd_bwd_gbs) < 1e-9 * fwd_bwd_gbs
    assert rows["ours"]["peak_mb"] > 0 and rows["ours"]["memory_ratio_vs_slow"] > 0
    assert "no kernel" in rows["broken"]["error"]  # reported, not fatal


def test_every_registered_case_is_well_formed():
    cases = all_cases()
    assert any(c.op == "roi_align" for c in cases)
    for c in cases:
        assert set(c.ours) <= set(c.impls), c.op
        assert set(c.baselines) <= set(c.impls), c.op
        assert c.ours, c.op


def test_cli_bench_writes_table_csv_json_png(tmp_path, capsys):
    out = tmp_path / "results"
    cli_main(["bench", "--ops", "roi_align", "--quick", "--repeats", "1",
              "--impls", "dapo_fast[cpu]", "torchvision", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "copy bandwidth measured in this run" in printed and "vs torchvision" in printed
    for name in ("bench.csv", "bench.json", "bench.png"):
        assert os.path.getsize(out / name) > 0
    data = json.loads((out / "bench.json").read_text())
    assert data["meta"]["copy_bandwidth_gbs"] > 0
    assert {r["impl"] for r in data["rows"]} == {"dapo_fast[cpu]", "torchvision"}


def test_peak_memory_counts_each_allocation_once():
    # zeros -> empty and matmul -> mm are nested ops; the 4 MB buffers must count once each
    a = torch.ones(1024, 1024)
    peak = runner.peak_memory_bytes(lambda: torch.zeros(1024, 1024) @ a)
    assert 8 * 2**20 <= peak < 9 * 2**20
