"""DDP via torchrun (2 processes, gloo, CPU) trains the same model as one process, within float noise."""
import os
import subprocess
import sys

import pytest
import torch
import yaml

import dapo_fast
from dapo_fast.train import loop
from dapo_fast.train.checkpoint import load_checkpoint
from dapo_fast.train.config import config_to_dict
from tests.train.tiny import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(dapo_fast.__file__)))


@pytest.mark.slow
def test_torchrun_two_ranks_match_one_process(tmp_path):
    single_cfg = tiny_config(tmp_path / "single", train=dict(max_steps=6))
    single = loop.train(single_cfg)

    ddp_cfg = tiny_config(tmp_path / "single", train=dict(max_steps=6, out_dir=str(tmp_path / "ddp")))
    cfg_path = tmp_path / "ddp.yaml"
    cfg_path.write_text(yaml.safe_dump(config_to_dict(ddp_cfg)))
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "dapo_fast.cli", "train", "--config", str(cfg_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished at step 6" in proc.stdout

    a = load_checkpoint(single["checkpoint"])
    b = load_checkpoint(str(tmp_path / "ddp" / "last.pt"))
    assert b["world_size"] == 2 and b["step"] == 6
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    torch.testing.assert_close(a["curriculum"]["sreg"], b["curriculum"]["sreg"], rtol=1e-4, atol=1e-5)

    from dapo_fast.train.demo import evaluate_checkpoint

    ra = evaluate_checkpoint(single["checkpoint"], "test")
    rb = evaluate_checkpoint(str(tmp_path / "ddp" / "last.pt"), "test")
    assert abs(ra["pointing"] - rb["pointing"]) <= 100.0 / ra["entities"] + 1e-6  # at most one entity flips
    assert abs(ra["bbox"] - rb["bbox"]) <= 100.0 / ra["entities"] + 1e-6
