"""`dapo-fast generate` end to end on a tiny random SD directory built from configs (3 denoising
steps, 32 px images): guided generation, shards written and read back, L_D training on them,
resuming, rank splitting, determinism per seed, and the bad-input errors."""
import json
import os
import shutil

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dapo_fast.cli import main as cli_main  # noqa: E402
from dapo_fast.data.sample import load_image  # noqa: E402
from dapo_fast.data.generated import GeneratedSet  # noqa: E402
from dapo_fast.diffusion.generate import (GenerationError, GenerationSettings, Prompt,  # noqa: E402
                                          entity_char_spans, generate, load_sd_directory, read_prompts,
                                          sample_prompts)
from tests.diffusion.conftest import PROMPTS, SETTINGS  # noqa: E402

def test_guided_generation_writes_shards_that_read_back(guided):
    out, stats = guided
    assert stats["generated"] == 2 and stats["shards"] == 2 and stats["skipped_shards"] == 0
    data = GeneratedSet(out)
    assert len(data) == 2 and data.has_attention
    for i, prompt in enumerate(PROMPTS):
        sample = data[i]
        record = data.records[i]
        assert sample["caption"] == prompt.caption and sample["phrases"] == list(prompt.entities)
        assert sample["mu"] == 0.0 and sample["num_objects"] == len(prompt.entities)
        for (start, end), entity in zip(sample["spans"], prompt.entities):
            assert prompt.caption[start:end] == entity
        image = load_image(sample["image"])
        assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
        maps = sample["attn_maps"]
        assert maps.shape == (len(prompt.entities), 16, 16) and torch.isfinite(maps).all()
        assert (maps >= 0).all() and (maps <= 1).all()
        # guidance ran on the first half of the steps (3 // 2 = 1) and logged L_A per guided step
        assert record["guidance"]["guidance"] and record["guidance"]["max_iter_to_alter"] == 1
        assert len(record["guidance_loss"]) == 1
        assert record["seed"] == i and record["eot_index"] > max(max(s) for s in record["token_spans"])
        assert os.path.exists(os.path.join(out, os.path.dirname(record["image"]), "sheets",
                                           os.path.basename(record["image"])))
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    assert manifest["num_prompts"] == 2 and manifest["settings"]["grounder"] == os.path.abspath(manifest["grounder"])


def test_training_step_on_generated_samples_lowers_diffusion_loss(guided, grounder):
    """One optimiser step of eq. 6 with mu = 0 (L_D alone, through the fused op) lowers L_D."""
    from dapo_fast.data.sample import collate_train
    from dapo_fast.losses.grounding import dapo_loss
    from dapo_fast.train.loop import load_trained

    out, _ = guided
    method, cfg, _ = load_trained(grounder)
    model, encode = method.model, method.encode_phrase
    model.train()
    samples = [GeneratedSet(out)[i] for i in range(2)]
    batch = collate_train(samples, encode, cfg.data.image_size, cfg.data.max_entities,
                          attn_size=cfg.data.image_size // model.stride)
    assert batch["attn_valid"].sum() == 5 and (batch["mu"] == 0).all()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)

    def diffusion_loss():
        outputs = model(batch["images"], batch["phrase_tokens"], batch["entity_valid"])
        return dapo_loss(outputs, batch, sreg=None, gamma=0.0)["loss"]

    before = diffusion_loss()
    opt.zero_grad()
    before.backward()
    opt.step()
    with torch.no_grad():
        after = diffusion_loss()
    assert after < before, (before, after)


def test_resume_skips_finished_shards_and_redoes_a_missing_one(guided, sd_dir, grounder, tmp_path):
    out, _ = guided
    copy = str(tmp_path / "copy")
    shutil.copytree(out, copy)
    settings = GenerationSettings(guidance=True, **SETTINGS)
    again = generate(sd_dir, copy, PROMPTS, settings, grounder_path=grounder, batch_size=2, shard_size=1,
                     progress=False, log=lambda *_: None)
    assert again["generated"] == 0 and again["skipped_shards"] == 2
    # a stopped run leaves no shard_00001 (only a partial directory): only that shard is redone,
    # alone in its batch now, and it comes out as it did in a batch of two (per-sample seeds)
    shutil.move(os.path.join(copy, "shard_00001"), os.path.join(copy, ".shard_00001.partial"))
    redo = generate(sd_dir, copy, PROMPTS, settings, grounder_path=grounder, batch_size=2, shard_size=1,
                    progress=False, log=lambda *_: None)
    assert redo["generated"] == 1 and redo["skipped_shards"] == 1
    assert not os.path.exists(os.path.join(copy, ".shard_00001.partial"))
    first, second = GeneratedSet(out), GeneratedSet(copy)
    torch.testing.assert_close(second.maps[1], first.maps[1], rtol=0, atol=1e-5)
    a, b = load_image(second[1]["image"]).int(), load_image(first[1]["image"]).int()
    assert (a - b).abs().max() <= 1  # a batch of one vs two may round one 8-bit level differently


def test_rerun_with_other_settings_is_refused(guided, sd_dir, grounder):
    out, _ = guided
    with pytest.raises(GenerationError, match="different 'settings'"):
        generate(sd_dir, out, PROMPTS, GenerationSettings(guidance=True, steps=4), grounder_path=grounder,
                 shard_size=1, progress=False, log=lambda *_: None)


def test_ranks_split_the_shards(sd_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    prompts = PROMPTS + [Prompt("a red ring", ("red ring",))]
    stats = generate(sd_dir, str(tmp_path), prompts, GenerationSettings(steps=2), shard_size=1, progress=False,
                     log=lambda *_: None)
    assert stats["generated"] == 1 and stats["rank"] == 1
    assert sorted(n for n in os.listdir(tmp_path) if n.startswith("shard_")) == ["shard_00001"]
    assert GeneratedSet(str(tmp_path)).records[0]["caption"] == PROMPTS[1].caption


def test_cli_generates_from_a_phrases_file(sd_dir, tmp_path):
    phrases = tmp_path / "phrases.jsonl"
    phrases.write_text(json.dumps({"caption": "a blue diamond near a red cross",
                                   "entities": ["blue diamond", "red cross"]}) + "\n\n")
    code = cli_main(["generate", "--model", sd_dir, "--out", str(tmp_path / "out"), "--phrases", str(phrases),
                     "--no-guidance", "--steps", "2", "--scheduler", "ddim", "--no-progress"])
    assert code == 0
    data = GeneratedSet(str(tmp_path / "out"))
    assert len(data) == 1 and data.phrases == [["blue diamond", "red cross"]]
    assert data.records[0]["guidance"]["scheduler"] == "ddim" and data.records[0]["guidance_loss"] == []


# ---- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder", "tokenizer", "scheduler"])
def test_missing_component_is_named(sd_dir, tmp_path, component):
    broken = str(tmp_path / "broken")
    shutil.copytree(sd_dir, broken)
    shutil.rmtree(os.path.join(broken, component))
    with pytest.raises(GenerationError, match=f"no '{component}' component"):
        load_sd_directory(broken)


def test_cli_reports_a_missing_component(sd_dir, tmp_path, capsys):
    broken = str(tmp_path / "broken")
    shutil.copytree(sd_dir, broken)
    shutil.rmtree(os.path.join(broken, "vae"))
    code = cli_main(["generate", "--model", broken, "--out", str(tmp_path / "out"), "--num-two", "1",
                     "--num-three", "0", "--no-guidance", "--no-progress"])
    assert code == 2 and "no 'vae' component" in capsys.readouterr().err


def test_unknown_entity_is_named(sd_dir, tmp_path):
    prompts = [Prompt("a red circle left of a blue square", ("red circle", "green ring"))]
    with pytest.raises(GenerationError, match="'green ring' does not occur"):
        generate(sd_dir, str(tmp_path), prompts, GenerationSettings(steps=2), progress=False, log=lambda *_: None)
    assert not os.listdir(tmp_path)  # refused before anything was written


@pytest.mark.parametrize("line, message", [
    ('{"caption": "a red ring", "entities": ["red ring"]', "not valid JSON"),
    ('["a red ring"]', "expected a JSON object"),
    ('{"caption": "", "entities": ["red ring"]}', "'caption' must be"),
    ('{"caption": "a red ring", "entities": []}', "'entities' must be"),
    ('{"caption": "a red ring", "entities": ["blue ring"]}', "'blue ring' does not occur"),
    ('{"caption": "a red ring", "entities": ["red r"]}', "'red r' does not occur"),
])
def test_bad_phrases_line_is_named_with_its_number(tmp_path, line, message):
    path = tmp_path / "phrases.jsonl"
    good = json.dumps({"caption": "a red circle and a blue square", "entities": ["red circle", "blue square"]})
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(GenerationError, match=f"phrases.jsonl line 3: .*{message}"):
        read_prompts(str(path))


def test_guidance_needs_a_grounder_and_the_cli_needs_a_choice(sd_dir, tmp_path, capsys):
    with pytest.raises(GenerationError, match="needs a grounder"):
        generate(sd_dir, str(tmp_path), PROMPTS, GenerationSettings(guidance=True), progress=False)
    with pytest.raises(SystemExit):
        cli_main(["generate", "--model", sd_dir, "--out", str(tmp_path)])
    assert "--grounder" in capsys.readouterr().err


# ---- prompts ------------------------------------------------------------------------------------

def test_phrase_sampler_matches_dapo_counts_and_the_vocabulary():
    from dapo_fast.data.synthetic import COLOURS, RELATIONS, SHAPES, SIZES

    prompts = sample_prompts(70, 30, seed=3)
    assert sample_prompts(70, 30, seed=3) == prompts and sample_prompts(70, 30, seed=4) != prompts
    assert sorted(len(p.entities) for p in prompts) == [2] * 70 + [3] * 30
    relations = {r for r in RELATIONS}
    for p in prompts:
        kinds = [tuple(e.split()) for e in p.entities]
        assert len(set(kinds)) == len(kinds)
        assert all(c in COLOURS and s in SHAPES for c, s in kinds)
        spans = entity_char_spans(p.caption, p.entities)
        assert [p.caption[a:b] for a, b in spans] == list(p.entities)
        between = [p.caption[spans[i][1]:spans[i + 1][0]].strip() for i in range(len(spans) - 1)]
        assert all(b.endswith(" a") and b[:-2] in relations for b in between)
    sized = sample_prompts(5, 5, seed=0, sizes=True)
    assert all(e.split()[0] in SIZES and len(e.split()) == 3 for p in sized for e in p.entities)
    assert len(sample_prompts()) == 10_000


def test_entity_char_spans_take_whole_words_and_successive_occurrences():
    assert entity_char_spans("a red ring and a red ring", ["red ring", "red ring"]) == [(2, 10), (17, 25)]
    assert entity_char_spans("a bred ring near a red ring", ["red ring"]) == [(19, 27)]
    with pytest.raises(GenerationError, match="'red ring' does not occur"):
        entity_char_spans("a red ring", ["red ring", "red ring"])


def test_a_directory_with_sd14s_scheduler_config_generates(sd_dir, tmp_path):
    """SD-1.4 ships a PNDM scheduler config (and safety-checker folders): DDPM and DDIM are built
    from it and the extra folders are ignored."""
    from diffusers import PNDMScheduler

    sd14_like = str(tmp_path / "sd14-like")
    shutil.copytree(sd_dir, sd14_like)
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                  steps_offset=1).save_pretrained(os.path.join(sd14_like, "scheduler"))
    os.makedirs(os.path.join(sd14_like, "safety_checker"))
    for scheduler in ("ddpm", "ddim"):
        out = str(tmp_path / scheduler)
        stats = generate(sd14_like, out, PROMPTS[:1], GenerationSettings(steps=2, scheduler=scheduler),
                         progress=False, log=lambda *_: None)
        assert stats["generated"] == 1 and torch.isfinite(GeneratedSet(out).maps[0]).all()


def test_cli_fidelity_of_a_generated_set(guided, tmp_path, capsys):
    out, _ = guided
    assert cli_main(["fidelity", out, "--json", str(tmp_path / "f.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.load(open(tmp_path / "f.json"))
    assert printed["images"] == 2 and printed["entities"] == 5
    assert 0 <= printed["found"] <= printed["colour"] <= 100 and 0 <= printed["peak_on_entity"] <= 100
    # the sheet: one row per image, the image and one panel per entity (at most 3) in each
    from PIL import Image

    sheet = str(tmp_path / "sheet.png")
    assert cli_main(["fidelity", out, "--sheet", sheet, "--sheet-images", "5"]) == 0
    assert Image.open(sheet).size == (int(1.9 * 4 * 80), int(2.0 * 2 * 80))
