"""Shared fixtures of the generation tests: a tiny random SD directory, a grounder checkpoint from
the training stack, and one guided generation run (3 denoising steps, 32 px images)."""
import contextlib
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dapo_fast.diffusion.generate import GenerationSettings, Prompt, generate  # noqa: E402
from dapo_fast.diffusion.tiny_sd import tiny_sd_directory  # noqa: E402

PROMPTS = [Prompt("a red circle left of a blue square", ("red circle", "blue square")),
           Prompt("a green ring above a yellow cross and a purple triangle",
                  ("green ring", "yellow cross", "purple triangle"))]
SETTINGS = dict(steps=3, cfg_scale=7.5, scheduler="ddpm")


@contextlib.contextmanager
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a shared CPU the hand-offs cost more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_thread_per_test():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def sd_dir(tmp_path_factory):
    with one_thread():
        return tiny_sd_directory(str(tmp_path_factory.mktemp("sd") / "tiny-sd"))


@pytest.fixture(scope="session")
def grounder(tmp_path_factory):
    """A real grounder checkpoint from the training stack (3 steps on 32 px synthetic images)."""
    from dapo_fast.train.loop import train
    from tests.train.tiny import tiny_config

    with one_thread():
        root = tmp_path_factory.mktemp("grounder")
        return train(tiny_config(root, train=dict(max_steps=3)), log=lambda *_: None)["checkpoint"]


@pytest.fixture(scope="session")
def guided(tmp_path_factory, sd_dir, grounder):
    with one_thread():
        out = str(tmp_path_factory.mktemp("gen") / "guided")
        stats = generate(sd_dir, out, PROMPTS, GenerationSettings(guidance=True, **SETTINGS),
                         grounder_path=grounder, batch_size=2, shard_size=1, save_maps=True, progress=False,
                         log=lambda *_: None)
    return out, stats


