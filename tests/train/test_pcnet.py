"""PCNet and TRIS as plug-ins of the one loop: training, resume, weak supervision only, config
checks, evaluation and its picture, the ops' backends, the cue file."""
import json

import pytest
import torch

import dapo_fast
import dapo_fast.train.loop as loop
import dapo_fast.train.methods.pcnet as pcnet_method
from dapo_fast.cli import main
from dapo_fast.data import build_splits
from dapo_fast.train.checkpoint import load_checkpoint
from dapo_fast.train.config import ConfigError, apply_overrides, config_from_dict, config_to_dict
from dapo_fast.train.methods import get
from tests.train.tiny import tiny_config


def _cfg(tmp_path, method="pcnet", **sections):
    return tiny_config(tmp_path, method=method, **sections)


def _losses(out_dir):
    return [json.loads(line) for line in open(out_dir / "metrics.jsonl")]


def test_pcnet_trains_and_its_loss_falls(tmp_path):
    cfg = _cfg(tmp_path, train=dict(max_steps=40, log_every=1), optim=dict(lr=0.005, warmup_steps=0))
    loop.train(cfg)
    rows = _losses(tmp_path / "run")
    assert {"cls", "ras", "iad", "loss"} <= set(rows[0])
    first = sum(r["cls"] for r in rows[:5]) / 5
    last = sum(r["cls"] for r in rows[-5:]) / 5
    assert last < 0.7 * first, (first, last)


def test_resume_is_bit_for_bit(tmp_path):
    full = loop.train(_cfg(tmp_path / "a", train=dict(max_steps=6)))
    part = loop.train(_cfg(tmp_path / "b", train=dict(max_steps=6, stop_after=3)))
    assert part["interrupted"] and part["step"] == 3
    resumed = loop.train(_cfg(tmp_path / "b", train=dict(max_steps=6)), resume=part["checkpoint"])
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed"} for r in rows]
    assert strip(_losses(tmp_path / "a" / "run")) == strip(_losses(tmp_path / "b" / "run"))


def test_warmup_defers_ras_and_iad_and_resumes_across_it(tmp_path):
    full = loop.train(_cfg(tmp_path / "a", train=dict(max_steps=6, log_every=1), pcnet=dict(warmup_steps=3)))
    rows = _losses(tmp_path / "a" / "run")
    assert ["ras" in r for r in rows] == [False, False, False, True, True, True]
    part = loop.train(_cfg(tmp_path / "b", train=dict(max_steps=6, log_every=1, stop_after=2), pcnet=dict(warmup_steps=3)))
    resumed = loop.train(_cfg(tmp_path / "b", train=dict(max_steps=6, log_every=1), pcnet=dict(warmup_steps=3)),
                         resume=part["checkpoint"])
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    assert a["method"] == b["method"] == {"steps_done": 6}
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_training_batches_carry_proposals_but_no_ground_truth(tmp_path, monkeypatch):
    seen = []
    real = pcnet_method.PCNet.forward_loss

    def spy(self, net, batch, sreg, gamma):
        seen.append(batch)
        return real(self, net, batch, sreg, gamma)

    monkeypatch.setattr(pcnet_method.PCNet, "forward_loss", spy)
    cfg = _cfg(tmp_path, train=dict(max_steps=2))
    loop.train(cfg)
    train_set = build_splits(cfg.data)["train"]
    assert seen
    for batch in seen:
        assert not set(batch) & {"gt_boxes", "gt_masks", "proposals", "image_sizes", "raw_images"}
        # the mask proposals are the dataset's class-agnostic proposals, not the targets' masks
        props = batch["mask_proposals"]
        assert props.shape[1:] == (40, 32, 32) and batch["proposal_valid"].all()
        assert any(torch.equal(props[0], train_set.mask_proposals[i]) for i in range(len(train_set)))
        assert not any(torch.equal(props[0, :1], m[:1, 2::4, 2::4]) for m in train_set.gt_masks)


def test_tris_trains_exactly_as_the_pcnet_tris_variant(tmp_path):
    tris = loop.train(_cfg(tmp_path / "t", method="tris", train=dict(max_steps=4, log_every=1)))
    variant = apply_overrides(config_to_dict(_cfg(tmp_path / "p", train=dict(max_steps=4, log_every=1))),
                              get("pcnet").ABLATION["TRIS"])
    pc = loop.train(config_from_dict(variant))
    a, b = load_checkpoint(tris["checkpoint"]), load_checkpoint(pc["checkpoint"])
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert [r["cls"] for r in _losses(tmp_path / "t" / "run")] == [r["cls"] for r in _losses(tmp_path / "p" / "run")]


@pytest.mark.slow
@pytest.mark.skipif(not dapo_fast.HAS_C, reason="dapo_fast._C not built")
@pytest.mark.parametrize("form", ["paper", "code"])
def test_reference_and_compiled_ops_give_the_same_training_step_for_50_steps(tmp_path, form):
    """Along 50 steps of training (on the compiled kernels), the step's loss and gradients with the
    losses' ops on backend="reference" equal those on backend="auto", same batch, same weights.
    (Two separate runs would not stay comparable: RaS and IaD pick proposals by argmax, and the
    kernels' last-bit differences eventually flip a near-tie and the runs part ways.)"""
    cfg = _cfg(tmp_path, train=dict(max_steps=50), pcnet=dict(ras_form=form, iad_form=form))
    trainer = loop.Trainer(cfg)
    method, params = trainer.method, [p for p in trainer.model.parameters() if p.requires_grad]
    # distinct stages from the start: identical stages put every RaS term at relu's kink, where a
    # last-bit difference between the backends decides whether it passes a gradient
    with torch.no_grad():
        for stage in trainer.model.stages:
            stage.t2t_mlp[2].weight.normal_(0.0, 0.05, generator=torch.Generator().manual_seed(0))
    steps = []

    def both_backends(net, batch, sreg, gamma):
        parts = method.forward_loss(net, batch, sreg, gamma)
        method.options.backend = "reference"
        try:
            ref = method.forward_loss(net, batch, sreg, gamma)
        finally:
            method.options.backend = "auto"
        for key in ("loss", "cls", "ras", "iad"):
            torch.testing.assert_close(parts[key], ref[key], rtol=1e-5, atol=1e-6,
                                       msg=lambda m: f"step {len(steps)}, {key}: {m}")
        grads = torch.autograd.grad(parts["loss"], params, retain_graph=True, allow_unused=True)
        ref_grads = torch.autograd.grad(ref["loss"], params, allow_unused=True)
        for g, r in zip(grads, ref_grads):
            if g is not None:
                torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6, msg=lambda m: f"step {len(steps)}: {m}")
        steps.append({k: float(v.detach()) for k, v in parts.items()})
        return parts

    trainer.step_fn = both_backends
    trainer.run()
    assert len(steps) == 50 and steps[-1]["cls"] < steps[0]["cls"]


@pytest.mark.parametrize("overrides, match", [
    ({"pcnet": {"stages": 0}}, r"'pcnet\.stages' must be >= 1"),
    ({"pcnet": {"warmup_steps": -1}}, r"'pcnet\.warmup_steps' must be >= 0"),
    ({"pcnet": {"w_iad": -1.0}}, r"'pcnet\.w_iad' must be >= 0"),
    ({"pcnet": {"stages": 1}}, r"'pcnet\.w_ras' must be 0 with pcnet\.stages = 1"),
    ({"pcnet": {"ras_form": "repo"}}, r"'pcnet\.ras_form' must be one of \('paper', 'code'\)"),
    ({"pcnet": {"iad_form": 1}}, r"'pcnet\.iad_form' must be a string"),
    ({"pcnet": {"iou_variant": "dice"}}, r"'pcnet\.iou_variant' must be one of"),
    ({"pcnet": {"backend": "gpu"}}, r"'pcnet\.backend' must be one of"),
    ({"pcnet": {"mask_threshold": 1.5}}, r"'pcnet\.mask_threshold' must be in \[0, 1\)"),
    ({"pcnet": {"stage": 3}}, r"unknown config key 'pcnet\.stage'"),
    ({"data": {"kind": "refcoco"}}, r"'pcnet\.cues' must name a JSONL"),
    ({"curriculum": {"score_q": True}}, r"'curriculum\.score_q' must be false for method 'pcnet'"),
    ({"method": "tris", "tris": {"w_cls": 0.0}}, r"'tris\.w_cls' must be > 0"),
    ({"method": "tris", "tris": {"stages": 3}}, r"unknown config key 'tris\.stages'"),
])
def test_bad_config_values_are_named(tmp_path, overrides, match):
    data = {"method": "pcnet"}
    for section, values in overrides.items():
        data[section] = values
    with pytest.raises(ConfigError, match=match):
        config_from_dict(data)


def test_every_ablation_variant_is_a_valid_config():
    method = get("pcnet")
    assert list(method.ABLATION) == ["TRIS", "+CRM", "+CRM+RaS", "+CRM+IaD", "+CRM+RaS+IaD"]
    for name, overrides in method.ABLATION.items():
        cfg = config_from_dict(apply_overrides({"method": "pcnet"}, list(overrides)))
        o = cfg.options
        assert (o.w_ras > 0) == ("RaS" in name) and (o.w_iad > 0) == ("IaD" in name)
        assert o.use_cues == ("CRM" in name)


def test_eval_cli_writes_the_response_picture(tmp_path, capsys):
    out = loop.train(_cfg(tmp_path, train=dict(max_steps=2)))
    png = tmp_path / "maps.png"
    js = tmp_path / "res.json"
    assert main(["eval", "--checkpoint", out["checkpoint"], "--png", str(png), "--json", str(js), "--limit", "6"]) == 0
    text = capsys.readouterr().out
    assert "| test |" in text and "PointM" in text and "mIoU" in text
    assert png.stat().st_size > 10_000
    res = json.loads(js.read_text())
    assert res["method"] == "pcnet" and res["maps"] > 0 and set(res["subsets"]) >= {"1-2", "6+"}
    for key in ("pointm", "pointm_align_corners", "miou", "oiou"):
        assert 0.0 <= res[key] <= 100.0


def test_cues_file_for_real_data(tmp_path):
    """Expressions without a built-in decomposition take their cues from the JSONL (--cues)."""
    cues = tmp_path / "cues.jsonl"
    cues.write_text(json.dumps({"expression": "the man on the left", "cues": ["a man", "on the left"]}) + "\n")
    table = pcnet_method.load_cues(str(cues))
    sample = dict(caption="the man on the left", phrases=["The man  on the left"], spans=[(0, 19)], image_id="7")
    assert pcnet_method.references(sample, "refcoco", table, 3, True) == [
        ("The man  on the left", ["a man", "on the left", "on the left"])]
    with pytest.raises(ValueError, match="no line for the expression 'a dog'.*'8'"):
        pcnet_method.references(dict(sample, phrases=["a dog"], image_id="8"), "refcoco", table, 3, True)
    with pytest.raises(ValueError, match="has no cues"):
        pcnet_method.references(sample, "refcoco", None, 3, True)
    # --cues sets pcnet.cues (and a cue file needs the pcnet method)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text("method: pcnet\ndata:\n  kind: refcoco\n")
    from dapo_fast.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--config", str(cfg_path), "--cues", str(cues)])
    assert config_from_args(args).options.cues == str(cues)
    args = build_parser().parse_args(["train", "--method", "wwbl", "--cues", str(cues)])
    with pytest.raises(ConfigError, match="section 'pcnet'"):
        config_from_args(args)
