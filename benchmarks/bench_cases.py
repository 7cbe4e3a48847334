"""pytest-benchmark over every case of the registry (dapo_fast/bench/cases/*.py): the sizes and
implementations `dapo-fast bench` times, one test per (case, implementation).

    python -m pytest benchmarks --benchmark-enable                  # every case
    python -m pytest benchmarks --benchmark-enable -m "not slow"    # the `--quick` cases only
    python -m pytest benchmarks --benchmark-enable -k "roi_align and small"

Without --benchmark-enable (the project's default) every implementation runs once, untimed.
Test ids are <op>-<size>-<impl>; the cases not in `--quick` are marked slow.
"""
import pytest
import torch

from dapo_fast.bench.registry import all_cases, backward_of

PARAMS = [pytest.param(case, impl, id=f"{case.op}-{case.size}-{impl}", marks=() if case.quick else pytest.mark.slow)
          for case in all_cases() for impl in case.impls]


@pytest.mark.parametrize("case,impl", PARAMS)
def test_forward(benchmark, case, impl):
    benchmark.group = f"{case.op}-{case.size}-forward"
    inputs = case.make_inputs()
    with torch.no_grad():
        benchmark(case.impls[impl], inputs)


@pytest.mark.parametrize("case,impl", [p for p in PARAMS if p.values[0].grad_inputs])
def test_forward_backward(benchmark, case, impl):
    benchmark.group = f"{case.op}-{case.size}-forward_backward"
    inputs = case.make_inputs()

    def step():
        for key in case.grad_inputs:
            inputs[key].grad = None
        backward_of(case.impls[impl](inputs))

    benchmark(step)
