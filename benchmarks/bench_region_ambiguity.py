import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("region_ambiguity")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_region_ambiguity_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_region_ambiguity_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
