"""pytest-benchmark over every case of the registry (dapo_fast/bench/cases/*.py): the sizes and
implementations `dapo-fast bench` times, one test per (case, implementation, device): the CPU, and
CUDA where a GPU is visible (the cases that build their inputs there).

    python -m pytest benchmarks --benchmark-enable                  # every case
    python -m pytest benchmarks --benchmark-enable -m "not slow"    # the `--quick` cases only
    python -m pytest benchmarks --benchmark-enable -k "roi_align and small"

Without --benchmark-enable (the project's default) every implementation runs once, untimed.
Test ids are <op>-<size>-<impl>-<device>; the cases not in `--quick` are marked slow.
"""
import pytest
import torch

from dapo_fast.bench.registry import all_cases, backward_of

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PARAMS = [pytest.param(case, impl, device, id=f"{case.op}-{case.size}-{impl}-{device}",
                       marks=() if case.quick else pytest.mark.slow)
          for device in DEVICES for case in all_cases() if device in case.devices() for impl in case.impls_on(device)]


def _synchronized(fn, device):
    if device == "cuda":
        def run(*args):
            out = fn(*args)
            torch.cuda.synchronize()
            return out
        return run
    return fn


@pytest.mark.parametrize("case,impl,device", PARAMS)
def test_forward(benchmark, case, impl, device):
    benchmark.group = f"{case.op}-{case.size}-{device}-forward"
    inputs = case.build_inputs(device)
    with torch.no_grad():
        benchmark(_synchronized(case.impls[impl], device), inputs)


@pytest.mark.parametrize("case,impl,device", [p for p in PARAMS if p.values[0].grad_inputs])
def test_forward_backward(benchmark, case, impl, device):
    benchmark.group = f"{case.op}-{case.size}-{device}-forward_backward"
    inputs = case.build_inputs(device)

    def step():
        for key in case.grad_inputs:
            inputs[key].grad = None
        backward_of(case.impls[impl](inputs))

    benchmark(_synchronized(step, device))
