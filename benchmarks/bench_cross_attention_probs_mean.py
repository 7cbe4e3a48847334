import pytest

from benchmarks.conftest import params_for, run_forward, run_forward_backward

PARAMS = params_for("cross_attention_probs_mean")


@pytest.mark.parametrize("case,impl", PARAMS)
def test_cross_attention_probs_mean_forward(benchmark, case, impl):
    run_forward(benchmark, case, impl)


@pytest.mark.parametrize("case,impl", PARAMS)
def test_cross_attention_probs_mean_forward_backward(benchmark, case, impl):
    run_forward_backward(benchmark, case, impl)
