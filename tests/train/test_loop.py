"""End-to-end training on a tiny config: resume is bit-for-bit, checkpoints fail clearly, no box reaches the loss."""
import json
import os

import pytest
import torch

import dapo_fast.train.loop as loop
import dapo_fast.train.methods.wwbl as wwbl
from dapo_fast.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from tests.train.tiny import tiny_config


def _params(path):
    return load_checkpoint(path)["model"]


def test_resume_is_bit_for_bit(tmp_path):
    full = tiny_config(tmp_path / "a")
    out = loop.train(full)
    assert out["step"] == 8 and not out["interrupted"]

    part = tiny_config(tmp_path / "b", train=dict(stop_after=5))
    stopped = loop.train(part)
    assert stopped["interrupted"] and stopped["step"] == 5
    resumed_cfg = tiny_config(tmp_path / "b")
    resumed = loop.train(resumed_cfg, resume=stopped["checkpoint"])
    assert resumed["step"] == 8

    a, b = load_checkpoint(out["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert torch.equal(a["curriculum"]["sreg"], b["curriculum"]["sreg"])
    assert a["curriculum"]["stage"] == b["curriculum"]["stage"]
    # the metrics log continues where the checkpoint was taken, with identical numbers
    la = [json.loads(x) for x in open(tmp_path / "a" / "run" / "metrics.jsonl")]
    lb = [json.loads(x) for x in open(tmp_path / "b" / "run" / "metrics.jsonl")]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]
    assert strip(la) == strip(lb)


def test_training_batches_carry_no_boxes_or_masks(tmp_path, monkeypatch):
    seen = []
    real = wwbl.dapo_loss

    def spy(out, batch, **kw):
        seen.append(set(batch))
        return real(out, batch, **kw)

    monkeypatch.setattr(wwbl, "dapo_loss", spy)
    loop.train(tiny_config(tmp_path, train=dict(max_steps=3)))
    assert seen and all(not (keys & {"gt_boxes", "gt_masks", "proposals", "mask_proposals", "image_sizes"})
                        for keys in seen)


def test_missing_and_corrupt_checkpoints(tmp_path):
    cfg = tiny_config(tmp_path)
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        loop.train(cfg, resume=str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        loop.train(cfg, resume=str(bad))
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a dapo_fast training checkpoint"):
        loop.load_trained(str(tmp_path / "foreign.pt"))
    save_checkpoint(str(tmp_path / "partial.pt"), {"model": {}, "step": 0})
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(str(tmp_path / "partial.pt"))
    with pytest.raises(FileNotFoundError, match="last.pt"):
        load_checkpoint(str(tmp_path))


def test_resume_refuses_a_different_config(tmp_path):
    out = loop.train(tiny_config(tmp_path, train=dict(max_steps=2)))
    other = tiny_config(tmp_path, train=dict(max_steps=2), wwbl=dict(tau=0.5))
    with pytest.raises(CheckpointError, match="'wwbl' config"):
        loop.train(other, resume=out["checkpoint"])


def _rewrite_config(path, edit):
    state = load_checkpoint(path)
    edit(state["config"])
    save_checkpoint(path, state)


def test_resume_of_a_checkpoint_written_before_a_config_key_existed(tmp_path):
    """A newer package adds config keys with defaults; a run saved without them still continues,
    a saved key with another value or one the package does not know still refuses."""
    out = loop.train(tiny_config(tmp_path, train=dict(max_steps=2)))
    _rewrite_config(out["checkpoint"], lambda c: (c["data"].pop("generated_root"), c["wwbl"].pop("tau")))
    again = loop.train(tiny_config(tmp_path, train=dict(max_steps=2)), resume=out["checkpoint"])
    assert again["step"] == 2
    _rewrite_config(out["checkpoint"], lambda c: c["data"].update(no_such_key=1))
    with pytest.raises(CheckpointError, match="'data' config"):
        loop.train(tiny_config(tmp_path, train=dict(max_steps=2)), resume=out["checkpoint"])


def test_evaluation_options_neither_block_resume_nor_change_training(tmp_path):
    from dapo_fast.train.config import ConfigError
    from dapo_fast.train.demo import evaluate_checkpoint

    out = loop.train(tiny_config(tmp_path, train=dict(max_steps=2)))
    again = loop.train(tiny_config(tmp_path, train=dict(max_steps=2), wwbl=dict(box_threshold=0.5)),
                       resume=out["checkpoint"])
    assert again["step"] == 2
    _, cfg, _ = loop.load_trained(out["checkpoint"], ["wwbl.box_threshold=0.5"])
    assert cfg.options.box_threshold == 0.5 and cfg.options.tau == tiny_config(tmp_path).options.tau
    with pytest.raises(ConfigError, match=r"can change only \['wwbl.box_threshold'\]"):
        loop.load_trained(out["checkpoint"], ["wwbl.tau=0.5"])
    with pytest.raises(ConfigError, match="box_threshold' must be in"):
        loop.load_trained(out["checkpoint"], ["wwbl.box_threshold=2"])
    wide, half = (evaluate_checkpoint(out["checkpoint"], "test", limit=8, evaluation_overrides=[f"wwbl.box_threshold={t}"])
                  for t in (0.01, 0.5))
    assert wide["pointing"] == half["pointing"]  # the peak does not depend on the box threshold


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(str(path), {"model": {}, "step": 1, "config": {}})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(str(path), {"model": {}, "step": 2, "config": {}})
    assert load_checkpoint(str(path))["step"] == 1  # the old file survives
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind


class _WithAttention(torch.utils.data.Dataset):
    """Wraps the synthetic split and marks half of it as generated images with attention maps."""
    has_attention = True

    def __init__(self, base):
        self.base = base
        self.num_objects = base.num_objects
        self.phrases = base.phrases

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        s = self.base[i]
        if i % 2:
            g = torch.Generator().manual_seed(i)
            s["attn_maps"] = torch.rand(len(s["phrases"]), 16, 16, generator=g)
            s["mu"] = 0.0
        return s


def test_diffusion_guided_term_reaches_the_loop(tmp_path, monkeypatch):
    real_build = loop.build_splits

    def build(cfg):
        splits = real_build(cfg)
        splits["train"] = _WithAttention(splits["train"])
        return splits

    seen = []
    real = wwbl.dapo_loss

    def spy(out, batch, **kw):
        res = real(out, batch, **kw)
        seen.append((bool(batch["attn_valid"].any()), float(res["diffusion"])))
        return res

    monkeypatch.setattr(loop, "build_splits", build)
    monkeypatch.setattr(wwbl, "dapo_loss", spy)
    loop.train(tiny_config(tmp_path, train=dict(max_steps=3)))
    assert seen and all(has and d > 0 for has, d in seen)


@pytest.mark.slow
def test_compiled_step_matches_eager(tmp_path):
    eager = loop.train(tiny_config(tmp_path / "e", train=dict(max_steps=3)))
    comp = loop.train(tiny_config(tmp_path / "c", train=dict(max_steps=3, compile=True)))
    a, b = _params(eager["checkpoint"]), _params(comp["checkpoint"])
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
