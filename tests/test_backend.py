"""Backend selection shared by every op."""
import os

import pytest
import torch

import dapo_fast
from dapo_fast.ops import _backend, use_backend


def test_auto_picks_the_compiled_cpu_kernel():
    expected = "cpu" if dapo_fast.HAS_C else "reference"
    assert _backend.resolve("auto", torch.device("cpu")) == expected


def test_auto_without_cpp_kernel_falls_back_to_reference_on_cpu():
    assert _backend.resolve("auto", torch.device("cpu"), has_cpp=False) == "reference"


def test_context_manager_sets_and_restores_default():
    with use_backend("reference"):
        assert _backend.resolve("auto", torch.device("cpu")) == "reference"
        assert _backend.resolve("cpu", torch.device("cpu")) == "cpu"  # explicit wins
    assert _backend.resolve("auto", torch.device("cpu")) != "reference" or not dapo_fast.HAS_C


def test_invalid_choices_name_the_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        _backend.resolve("gpu", torch.device("cpu"))
    with pytest.raises(ValueError, match="backend must be one of"):
        with use_backend("nope"):
            pass
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        _backend.resolve("cuda", torch.device("cpu"))
    with pytest.raises(ValueError, match="no C\\+\\+ kernel"):
        _backend.resolve("cpu", torch.device("cpu"), has_cpp=False)
    with pytest.raises(ValueError, match="no Triton kernel"):
        _backend.resolve("triton", torch.device("cpu"), has_triton=False)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="TRITON_INTERPRET"):
        _backend.resolve("triton", torch.device("cpu"))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _backend.resolve("triton", torch.device("cpu")) == "triton"
    assert os.environ["TRITON_INTERPRET"] == "1"
