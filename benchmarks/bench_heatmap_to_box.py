import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("heatmap_to_box")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_heatmap_to_box_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_heatmap_to_box_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
