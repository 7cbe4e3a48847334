"""Test set-up shared by every test file.

* Without a CUDA device, Triton kernels run under TRITON_INTERPRET=1; it must be set before
  anything imports triton, which is why it happens here, first. With one, the tests marked
  ``triton`` build their tensors on the GPU and the kernels run natively (tools/gpu_check.sh).
* ``seed`` gives each test a fresh random seed for torch, numpy and ``random`` (printed on
  failure so a run can be replayed with DAPO_FAST_TEST_SEED=<seed>).
"""
import json
import os
import random

import numpy as np
import pytest

if "TRITON_INTERPRET" not in os.environ:
    try:
        import torch as _torch

        _has_cuda = _torch.cuda.is_available()
    except Exception:  # pragma: no cover
        _has_cuda = False
    if not _has_cuda:
        os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from tests import _helpers  # noqa: E402,F401


@pytest.fixture
def seed(request):
    value = int(os.environ.get("DAPO_FAST_TEST_SEED", random.SystemRandom().randrange(2**31)))
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)
    request.node.user_properties.append(("seed", value))
    print(f"[seed] {request.node.nodeid}: DAPO_FAST_TEST_SEED={value}")
    return value


@pytest.fixture(autouse=True)
def _triton_tests_on_the_gpu(request):
    """A test marked ``triton`` builds its tensors on the default device: on a CUDA machine that is
    the GPU (the Triton kernels run natively), elsewhere the CPU (under TRITON_INTERPRET=1)."""
    if request.node.get_closest_marker("triton") is None or not torch.cuda.is_available():
        yield
        return
    with torch.device("cuda"):
        yield


def pytest_collection_modifyitems(config, items):
    has_cuda = torch.cuda.is_available()
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)


@pytest.fixture
def poison():
    """Freshly allocated tensors (torch.empty / at::empty, also inside our C++ ops) come back
    NaN-filled, so an element a kernel forgets to write shows up as NaN."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    assert torch.isnan(torch.empty(4)).all(), "uninitialised-memory poisoning is not active"
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


# a ViT small enough to build in a blink; registered under a name open_clip does not ship
TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture
def tiny_clip(tmp_path):
    """open_clip with the model config "dapo-tiny-vit" registered (random init; the real CLIP BPE
    tokenizer ships with open_clip, so tokenising works offline)."""
    open_clip = pytest.importorskip("open_clip")
    (tmp_path / "dapo-tiny-vit.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(tmp_path / "dapo-tiny-vit.json"))
    return open_clip
