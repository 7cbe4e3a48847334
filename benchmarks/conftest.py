"""pytest-benchmark cases reuse the runner's registry (dapo_fast/bench/cases/*), so the two
never disagree on sizes or implementations. Run: pytest benchmarks --benchmark-enable"""
import pytest
import torch

from dapo_fast.bench.registry import all_cases, backward_of


def params_for(op: str, quick_only: bool = False):
    cases = [c for c in all_cases() if c.op == op and (c.quick or not quick_only)]
    return [pytest.param(c, name, id=f"{c.size}-{name}") for c in cases for name in c.impls]


def run_forward(benchmark, case, impl):
    inputs = case.make_inputs()
    with torch.no_grad():
        benchmark(case.impls[impl], inputs)


def run_forward_backward(benchmark, case, impl):
    if not case.grad_inputs:
        pytest.skip("forward-only op")
    inputs = case.make_inputs()

    def step():
        for k in case.grad_inputs:
            inputs[k].grad = None
        backward_of(case.impls[impl](inputs))

    benchmark(step)
