"""Training on generated images (DAPO's GAT): real + generated mixing in the curriculum, eq. 6
with mu, L_D through the loop, resume with generated data, config errors."""
import json
import os

import pytest
import torch

from dapo_fast.data.generated import GeneratedSet, MixedSet
from dapo_fast.diffusion.generate import GenerationSettings, generate, sample_prompts
from dapo_fast.train.config import ConfigError, CurriculumConfig
from dapo_fast.train.curriculum import Curriculum
from dapo_fast.train.methods.wwbl import WWbL
from tests.diffusion.conftest import one_thread
from tests.train.tiny import tiny_config


@pytest.fixture(scope="module")
def plain_set(tmp_path_factory, sd_dir):
    """Eight generated images (two denoising steps, no guidance)."""
    out = str(tmp_path_factory.mktemp("gen") / "plain")
    with one_thread():
        generate(sd_dir, out, sample_prompts(5, 3, seed=1), GenerationSettings(steps=2), batch_size=8,
                 shard_size=4, progress=False, log=lambda *_: None)
    return out


def _curriculum(fraction, generated, counts, batch=8, **cfg):
    return Curriculum(CurriculumConfig(score_s=False, **cfg), counts, torch.ones(len(counts), 3, dtype=torch.bool),
                      batch, 100, seed=3, generated=generated, generated_fraction=fraction)


def test_curriculum_draws_the_generated_share_of_every_batch():
    counts = torch.tensor([1, 2, 3, 4] * 10 + [2, 3] * 10)         # 40 real, then 20 generated (2-3 entities)
    generated = torch.arange(60) >= 40
    cur = _curriculum(0.25, generated, counts, stage_epochs=2.0)
    seen_generated = set()
    for _ in range(30):
        idx = cur.next_indices()
        assert len(idx) == 8 and int(generated[idx].sum()) == 2
        assert bool((counts[idx] <= cur.cfg.subsets[cur.stage - 1][1]).all())   # within the current pool
        seen_generated |= set(idx[generated[idx]].tolist())
    assert seen_generated == set(range(40, 60))                      # every generated sample was drawn
    # resuming from the state continues the same sequence
    other = _curriculum(0.25, generated, counts, stage_epochs=2.0)
    other.load_state_dict(cur.state_dict())
    for _ in range(10):
        assert torch.equal(cur.next_indices(), other.next_indices())


def test_without_a_fraction_generated_samples_are_drawn_as_the_pool_holds_them():
    counts = torch.tensor([1] * 16 + [2] * 16)
    generated = torch.arange(32) >= 16
    natural = _curriculum(None, generated, counts, score_q=False)
    plain = _curriculum(None, None, counts, score_q=False)
    for _ in range(8):  # one stream over the whole pool, exactly the order without generated data
        assert torch.equal(natural.next_indices(), plain.next_indices())
    with pytest.raises(ValueError, match="fewer than the 8 a batch takes"):
        _curriculum(0.0, torch.arange(32) >= 4, counts, score_q=False).next_indices()


def test_mixed_set_puts_generated_samples_after_the_real_ones(plain_set, tmp_path):
    from dapo_fast.data import build_splits

    cfg = tiny_config(tmp_path, data=dict(generated_root=plain_set))
    train = build_splits(cfg.data)["train"]
    assert isinstance(train, MixedSet) and train.has_attention
    generated = GeneratedSet(plain_set)
    assert len(train) == train.num_real + len(generated) and int(train.generated_mask.sum()) == len(generated)
    assert train[0]["mu"] == 1.0 and train[0]["attn_maps"] is None
    last = train[len(train) - 1]
    assert last["mu"] == 0.0 and last["caption"] == generated.captions[-1]
    assert torch.equal(train.num_objects[train.num_real:], generated.num_objects)


def test_training_on_real_and_generated_images(plain_set, tmp_path, monkeypatch):
    """Every batch holds the configured share of generated samples (mu = 0, with attention maps);
    L_D is logged; a run stopped and resumed ends bit-for-bit where an uninterrupted one ends."""
    from dapo_fast.train.checkpoint import load_checkpoint
    from dapo_fast.train.loop import train

    shares = []
    real_collate = WWbL.collate

    def spy(self, samples):
        batch = real_collate(self, samples)
        if len(samples) == 8:  # a training batch (the curriculum's scoring collates the whole set)
            shares.append((int((batch["mu"] == 0).sum()), int(batch["attn_valid"].any(1).sum())))
        return batch

    monkeypatch.setattr(WWbL, "collate", spy)
    sections = dict(data=dict(generated_root=plain_set, generated_fraction=0.5),
                    train=dict(batch_size=8, max_steps=6))
    full = train(tiny_config(tmp_path / "a", **sections), log=lambda *_: None)
    assert shares and all(s == (4, 4) for s in shares)
    log = [json.loads(line) for line in open(tmp_path / "a" / "run" / "metrics.jsonl")]
    assert all("diffusion" in r and r["diffusion"] > 0 for r in log)

    stopped = train(tiny_config(tmp_path / "b", **dict(sections, train=dict(batch_size=8, max_steps=6,
                                                                             stop_after=3))), log=lambda *_: None)
    resumed = train(tiny_config(tmp_path / "b", **sections), resume=stopped["checkpoint"], log=lambda *_: None)
    a, b = load_checkpoint(full["checkpoint"]), load_checkpoint(resumed["checkpoint"])
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_generated_data_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.generated_fraction' needs 'data.generated_root'"):
        tiny_config(tmp_path, data=dict(generated_fraction=0.5))
    with pytest.raises(ConfigError, match=r"data.generated_fraction' must be in \[0, 1\]"):
        tiny_config(tmp_path, data=dict(generated_root="x", generated_fraction=1.5))
    with pytest.raises(FileNotFoundError, match="no generated set"):
        from dapo_fast.data import build_splits

        build_splits(tiny_config(tmp_path, data=dict(generated_root=str(tmp_path / "none"))).data)


def test_gat_demo_chain_runs_and_reuses_finished_stages(sd_dir, tmp_path):
    """The whole chain on the tiny SD (32 px) and a tiny grounder config: trained, generated with
    and without guidance, fine-tuned three times, evaluated; a rerun reuses every stage."""
    from dapo_fast.diffusion.gat_demo import run_gat_demo

    cfg = tiny_config(tmp_path, train=dict(max_steps=3))
    out = str(tmp_path / "demo")
    first = run_gat_demo(cfg, out, model_dir=sd_dir, num_images=4, finetune_steps=2, steps=2, batch_size=4,
                         compare_plain=True, seeds=(0, 1), log=lambda *_: None)
    assert first["num_images"] == 4 and len(first["rows"]) == 4
    assert all(len(row["seeds"]) == 2 for name, row in first["rows"].items() if name != "grounder (real)")
    assert "(mean over seeds [95% t interval over seeds]" in open(os.path.join(out, "gat_demo.md")).read()
    guided, plain = GeneratedSet(os.path.join(out, "generated")), GeneratedSet(os.path.join(out, "generated_plain"))
    assert [r["caption"] for r in guided.records] == [r["caption"] for r in plain.records]
    assert [r["seed"] for r in guided.records] == [r["seed"] for r in plain.records]
    assert guided.records[0]["guidance"]["guidance"] and not plain.records[0]["guidance"]["guidance"]
    assert first["fidelity_plain"]["images"] == 4
    for row in first["rows"].values():
        for res in row.get("seeds", [row]):
            assert 0 <= res["pointing"] <= 100 and res["entities"] > 0
    assert set(first["fidelity"]) >= {"found", "all_found", "peak_on_entity"}
    from dapo_fast.train.checkpoint import load_checkpoint

    tuned = load_checkpoint(os.path.join(out, "finetuned_gat", "seed1", "last.pt"))
    assert tuned["step"] == 2 and tuned["config"]["data"]["generated_root"].endswith("generated")
    assert tuned["config"]["train"]["seed"] == 1
    assert tuned["config"]["train"]["init_from"] == os.path.join(out, "grounder", "last.pt")
    messages = []
    run_gat_demo(cfg, out, model_dir=sd_dir, num_images=4, finetune_steps=2, steps=2, batch_size=4,
                 compare_plain=True, seeds=(0, 1), log=messages.append)
    assert sum(m.startswith("resumed from") for m in messages) == 7 and sum("nothing to do" in m for m in messages) == 2


def test_fine_tuning_starts_from_the_checkpoint(grounder, tmp_path):
    from dapo_fast.train.checkpoint import CheckpointError, load_checkpoint
    from dapo_fast.train.loop import Trainer

    trainer = Trainer(tiny_config(tmp_path, train=dict(init_from=grounder)), log=lambda *_: None)
    start = load_checkpoint(grounder)
    for key, value in start["model"].items():
        assert torch.equal(trainer.model.state_dict()[key], value), key
    assert trainer.step == 0 and trainer.tokenizer.vocab == start["tokenizer"]["vocab"]
    with pytest.raises(CheckpointError, match="another method or model config"):
        Trainer(tiny_config(tmp_path, model=dict(dim=8), train=dict(init_from=grounder)), log=lambda *_: None)


def test_gat_rows_compare_data_sources_and_rerun_reuses_finished_runs(plain_set, tmp_path):
    from dapo_fast.train.demo import generated_data_variants, run_variants

    variants = generated_data_variants({"plain": plain_set})
    assert variants == {"real only": [], "real + plain": [f"data.generated_root={plain_set}"]}
    cfg = tiny_config(tmp_path, train=dict(max_steps=2))
    rows = run_variants(cfg, variants, seeds=[0], log=lambda *_: None, name="gat_ablation")
    assert (tmp_path / "run" / "real_plain" / "seed0" / "last.pt").exists()
    assert "| real + plain |" in (tmp_path / "run" / "gat_ablation.md").read_text()
    messages = []
    again = run_variants(cfg, variants, seeds=[0], log=messages.append, name="gat_ablation")
    assert sum(m.startswith("resumed from") for m in messages) == 2
    for name in rows:
        assert again[name]["seeds"][0]["pointing"] == rows[name]["seeds"][0]["pointing"]
