"""MPL, ReIR and QueryMatch/AlignCAT as plug-ins of the training loop: they train, resume
bit-for-bit, see no ground truth, refuse bad configs by name, ship their defaults as
configs/<method>.yaml, and give the same losses with the fused ops as with the reference ops and
the papers' code forms."""
import json
import os

import pytest
import torch

import dapo_fast.train.loop as loop
from dapo_fast.cli import main
from dapo_fast.ops import use_backend
from dapo_fast.train import methods
from dapo_fast.train.checkpoint import load_checkpoint
from dapo_fast.train.config import ConfigError, config_from_dict, config_to_dict, load_config

METHODS = ("mpl", "reir", "querymatch")
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "configs")


def proposal_config(tmp_path, method, **sections):
    """The tiny test sizes (tests/train/tiny.py) for a proposal method."""
    data = {
        "method": method,
        "data": dict(root=str(tmp_path / "data"), num_train=64, num_val=4, num_test=24, image_size=32),
        "model": dict(dim=16, cnn_width=8, text_width=16),
        method: dict(pool_size=3, head_hidden=16),
        "optim": dict(lr=0.01),
        "train": dict(out_dir=str(tmp_path / "run"), batch_size=16, max_steps=8, compile=False, log_every=1,
                      ckpt_every=0, progress=False),
    }
    for section, values in sections.items():
        data[section] = dict(data.get(section, {}), **values)
    return config_from_dict(data)


def losses(run_dir):
    return [json.loads(line)["loss"] for line in open(os.path.join(run_dir, "metrics.jsonl"))]


@pytest.mark.parametrize("method", METHODS)
def test_trains_on_tiny_data_and_its_loss_falls(tmp_path, method):
    # 16 images and a batch of 16: every step sees the same images, so the loss must go down. MPL
    # learns slowest: its targets are its own teacher's, and without the region transformer
    # (its default) nothing memorises the images
    steps = 80 if method == "mpl" else 30
    cfg = proposal_config(tmp_path, method, data=dict(num_train=16), train=dict(max_steps=steps))
    out = loop.train(cfg)
    seen = losses(out["out_dir"])
    assert len(seen) == steps and all(v == v for v in seen)
    first, last = sum(seen[:5]) / 5, sum(seen[-5:]) / 5
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("method", METHODS)
def test_resume_is_bit_for_bit(tmp_path, method):
    full = loop.train(proposal_config(tmp_path / "a", method))
    stopped = loop.train(proposal_config(tmp_path / "b", method, train=dict(stop_after=5)))
    assert stopped["interrupted"] and stopped["step"] == 5
    resumed = loop.train(proposal_config(tmp_path / "b", method), resume=stopped["checkpoint"])
    assert resumed["step"] == 8
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["method"]["step"] == b["method"]["step"] == 8
    for k in a["method"].get("teacher", {}):  # MPL's momentum teacher
        assert torch.equal(a["method"]["teacher"][k], b["method"]["teacher"][k]), k
    assert losses(full["out_dir"]) == losses(resumed["out_dir"])


@pytest.mark.parametrize("method", METHODS)
def test_training_batches_carry_no_ground_truth(tmp_path, monkeypatch, method):
    cls = methods.get(method)
    seen = []
    real_loss, real_collate = cls.forward_loss, cls.collate

    def spy_collate(self, samples):
        batch = real_collate(self, samples)
        # the proposals are the samples' own (detector) boxes in the input frame, never their ground truth
        scale = self.cfg.data.image_size / samples[0]["image"].shape[-1]
        for i, s in enumerate(samples):
            assert torch.allclose(batch["boxes"][i], s["proposals"] * scale)
        return batch

    def spy_loss(self, net, batch, sreg, gamma):
        seen.append(set(batch))
        return real_loss(self, net, batch, sreg, gamma)

    monkeypatch.setattr(cls, "forward_loss", spy_loss)
    monkeypatch.setattr(cls, "collate", spy_collate)
    loop.train(proposal_config(tmp_path, method, train=dict(max_steps=2)))
    allowed = {"images", "phrase_tokens", "entity_valid", "boxes", "box_valid", "text_class"}
    assert seen and all(keys <= allowed for keys in seen), seen


@pytest.mark.parametrize("method, data, match", [
    ("mpl", {"mpl": {"nope": 1}}, r"unknown config key 'mpl\.nope'"),
    ("mpl", {"mpl": {"mode": "fnx"}}, r"'mpl\.mode' must be one of \('none', 'fne', 'fnc'\)"),
    ("mpl", {"mpl": {"momentum": 1.5}}, r"'mpl\.momentum' must be in \[0, 1\]"),
    ("mpl", {"mpl": {"fn_features": "raw"}}, r"'mpl\.fn_features' must be one of"),
    ("mpl", {"mpl": {"context_layers": -1}}, r"'mpl\.context_layers' must be >= 0"),
    ("reir", {"reir": {"top_k": 0}}, r"'reir\.top_k' must be >= 1"),
    ("reir", {"reir": {"refine": "yes"}}, r"'reir\.refine' must be a bool"),
    ("reir", {"reir": {"reg_start": 7500}}, r"'reir\.reg_start' must be a share of the run"),
    ("querymatch", {"querymatch": {"negatives": "few"}}, r"'querymatch\.negatives' must be one of"),
    ("querymatch", {"querymatch": {"uniqueness": "greedy"}}, r"'querymatch\.uniqueness' must be one of"),
    ("querymatch", {"querymatch": {"categories": []}}, r"'querymatch\.categories' must name at least one"),
    ("querymatch", {"querymatch": {"pool_size": 0}}, r"'querymatch\.pool_size' must be >= 1"),
    ("querymatch", {"mpl": {"mode": "fne"}}, r"section 'mpl' holds the options of method 'mpl'"),
    ("reir", {"curriculum": {"score_s": True}}, r"'curriculum\.score_s' must be false for method 'reir'"),
])
def test_bad_config_names_the_key(method, data, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(dict(data, method=method))


@pytest.mark.parametrize("method", METHODS)
def test_configs_yaml_is_the_methods_builtin_defaults(method):
    # `dapo-fast train --method X` without --config must train exactly configs/X.yaml
    builtin = config_from_dict({"method": method})
    assert config_to_dict(builtin) == config_to_dict(load_config(os.path.join(CONFIGS, f"{method}.yaml")))
    assert builtin.options == methods.get(method).Options()
    assert not builtin.curriculum.score_q and not builtin.curriculum.score_s


def test_eval_cli_reports_accuracy_beside_the_references(tmp_path, capsys):
    out = loop.train(proposal_config(tmp_path, "reir", train=dict(max_steps=2)))
    png, js = tmp_path / "grid.png", tmp_path / "res.json"
    assert main(["eval", "--checkpoint", out["out_dir"], "--png", str(png), "--json", str(js)]) == 0
    table = capsys.readouterr().out
    for header in ("Acc all", "Acc 6+", "Acc unrefined", "Oracle", "Random"):
        assert header in table
    res = json.loads(js.read_text())
    assert res["method"] == "reir" and 0 <= res["random"] < res["oracle"] <= 100
    assert png.stat().st_size > 1000


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_fused_ops_and_reference_code_forms_give_the_same_50_steps(tmp_path, method):
    """50 training steps in float64 with backend="auto" (the kernels) and with backend="reference" plus
    the papers' code forms: every step's loss agrees to 1e-9 relative. Float64 keeps the discrete
    choices (top-K, pseudo ground truth, hard negatives, false-negative thresholds) from flipping on
    rounding, so any difference is a real disagreement of the two implementations."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        fast = loop.train(proposal_config(tmp_path / "fast", method, train=dict(max_steps=50)))
        with use_backend("reference"):
            ref = loop.train(proposal_config(tmp_path / "ref", method, train=dict(max_steps=50),
                                             **{method: dict(pool_size=3, head_hidden=16, code_form=True)}))
    finally:
        torch.set_default_dtype(previous)
    a, b = losses(fast["out_dir"]), losses(ref["out_dir"])
    assert len(a) == len(b) == 50
    for step, (x, y) in enumerate(zip(a, b), 1):
        assert x == pytest.approx(y, rel=1e-9, abs=1e-12), f"step {step}: {x} vs {y}"


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_torchrun_two_ranks_train(tmp_path, method):
    """DDP (2 processes, gloo): each rank contrasts within its slice of the global batch, the gradients
    are averaged, the teacher (MPL) follows the same averaged student on every rank."""
    import subprocess
    import sys

    import yaml

    cfg = proposal_config(tmp_path, method, train=dict(max_steps=3))
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(cfg)))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dapo_fast.cli",
           "train", "--config", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert state["world_size"] == 2 and state["step"] == 3 and state["method"]["step"] == 3
    assert all(v == v for v in losses(str(tmp_path / "run")))


class _WithoutProposals(torch.utils.data.Dataset):
    """A split whose samples carry no proposals (a real dataset's), for a detections file to supply."""

    def __init__(self, base):
        self.base = base
        self.num_objects = base.num_objects
        self.phrases = base.phrases

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        return dict(self.base[i], proposals=None)


def test_detections_file_supplies_the_proposals_of_real_data(tmp_path, monkeypatch):
    cfg = proposal_config(tmp_path, "reir", train=dict(max_steps=2))
    splits = loop.build_splits(cfg.data)
    train_split = splits["train"]
    # the detector's boxes for every training image, in the documented JSONL format
    path = tmp_path / "detections.jsonl"
    path.write_text("".join(json.dumps({"image_id": s["image_id"], "boxes": s["proposals"].tolist(),
                                        "scores": list(range(len(s["proposals"])))}) + "\n"
                            for s in (train_split[i] for i in range(len(train_split)))))
    monkeypatch.setattr(loop, "build_splits", lambda data_cfg: dict(splits, train=_WithoutProposals(train_split)))
    seen = []
    cls = methods.get("reir")
    real_collate = cls.collate

    def spy(self, samples):
        seen.append((samples, real_collate(self, samples)))
        return seen[-1][1]

    monkeypatch.setattr(cls, "collate", spy)
    out = loop.train(proposal_config(tmp_path, "reir", train=dict(max_steps=2, out_dir=str(tmp_path / "run2")),
                                     reir=dict(pool_size=3, head_hidden=16, proposals=str(path), max_proposals=10)))
    assert out["step"] == 2 and seen
    samples, batch = seen[0]
    scale = cfg.data.image_size / samples[0]["image"].shape[-1]
    for i, s in enumerate(samples):
        assert s["proposals"] is None
        own = train_split[int(s["image_id"].split("/")[1])]["proposals"]
        # max_proposals keeps the 10 highest scores: the last 10 boxes of the line, most confident first
        assert torch.allclose(batch["boxes"][i], own.flip(0)[:10] * scale)



@pytest.mark.parametrize("center", [True, False])
def test_mpl_retrieves_false_negatives_on_features_centred_on_the_batch(center):
    import types

    from dapo_fast.train.methods.mpl import MPL, MPLOptions

    stub = types.SimpleNamespace(options=MPLOptions(fn_features="teacher_region", fn_center=center), detector=None)
    region = torch.randn(3, 4, 5, dtype=torch.float64) + 10.0  # a large shared component: raw cosines near 1
    valid = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    region[~valid] = 1e6  # padding takes no part in the mean
    got = MPL.fn_features(stub, {"box_valid": valid}, {"region": region, "pooled": None})
    mean = region[valid].mean(0)
    torch.testing.assert_close(got, region - mean if center else region)
