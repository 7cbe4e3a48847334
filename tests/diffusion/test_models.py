"""Models from configs, the word-list CLIP tokenizer, train-diffusion (a few steps, resume, the
saved directory loads like SD), per-sample entity maps, the xformers fallback, the fidelity check."""
import json
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dapo_fast.diffusion import attention_maps  # noqa: E402
from dapo_fast.diffusion.fidelity import (check_entities, colour_masks, connected_components,  # noqa: E402
                                          fidelity_of_images, palette, shape_templates)
from dapo_fast.diffusion.models import vocabulary_tokenizer  # noqa: E402
from dapo_fast.diffusion.token_maps import clip_tokenizer, entity_attention_maps, token_attention_maps  # noqa: E402
from dapo_fast.diffusion.train_diffusion import (caption_words, export_checkpoint,  # noqa: E402
                                                 load_diffusion_config, synthetic_images, train_diffusion)


def test_vocabulary_tokenizer_tokenises_its_words_as_clip(tmp_path):
    tokenizer = vocabulary_tokenizer(caption_words(), str(tmp_path))
    full = clip_tokenizer()
    assert len(tokenizer) < 1000
    for text in ["a red circle left of a blue square", "a large purple ring near a small orange diamond",
                 "a yellow cross below a green triangle and a red ring"]:
        assert tokenizer.tokenize(text) == full.tokenize(text)
        ids = tokenizer(text).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    # other text falls back to shorter pieces of the vocabulary, never to the unknown token
    pieces = tokenizer("zebra", add_special_tokens=False).input_ids
    assert len(pieces) > 1 and tokenizer.unk_token_id not in pieces
    with pytest.raises(ValueError, match="ASCII letters"):
        vocabulary_tokenizer(["red", "two words"], str(tmp_path / "bad"))


def test_entity_attention_maps_is_token_attention_maps_per_sample(seed):
    agg = torch.rand(3, 64, 77).softmax(-1).requires_grad_()
    spans = [[[1], [3, 4]], [[2]], [[1], [2], [5]]]
    lasts = [6, 4, 9]
    maps, valid = entity_attention_maps(agg, spans, lasts)
    assert maps.shape == (3, 3, 8, 8)
    assert valid.tolist() == [[True, True, False], [True, False, False], [True, True, True]]
    for b in range(3):
        want = token_attention_maps(agg[b:b + 1], spans[b], lasts[b])[0]
        torch.testing.assert_close(maps[b, :len(spans[b])], want)
        assert (maps[b, len(spans[b]):] == 0).all()
    maps.sum().backward()
    assert agg.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one list of spans per sample"):
        entity_attention_maps(agg, spans[:2], lasts)
    with pytest.raises(ValueError, match="one index per sample"):
        entity_attention_maps(agg, spans, lasts[:2])
    empty, empty_valid = entity_attention_maps(agg[:0], [], [])
    assert empty.shape == (0, 0, 8, 8) and empty_valid.shape == (0, 0)


class _FakeXformers:
    def __init__(self, error):
        self.error = error

    def memory_efficient_attention(self, q, k, v):
        if self.error is not None:
            raise self.error
        return torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                                                v.transpose(1, 2)).transpose(1, 2)


def test_xformers_fallback_only_for_an_unusable_xformers(monkeypatch):
    q, k, v = torch.randn(1, 2, 5, 4), torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    monkeypatch.setattr(attention_maps, "xformers_ops", lambda: None)             # not installed / not loadable
    assert attention_maps.xformers_attention(q, k, v) is None
    monkeypatch.setattr(attention_maps, "xformers_ops", lambda: _FakeXformers(NotImplementedError("no kernel")))
    assert attention_maps.xformers_attention(q, k, v) is None                       # no kernel for these inputs
    monkeypatch.setattr(attention_maps, "xformers_ops", lambda: _FakeXformers(None))
    torch.testing.assert_close(attention_maps.xformers_attention(q, k, v),
                               torch.nn.functional.scaled_dot_product_attention(q, k, v))
    monkeypatch.setattr(attention_maps, "xformers_ops", lambda: _FakeXformers(RuntimeError("CUDA error: illegal")))
    with pytest.raises(RuntimeError, match="illegal"):                               # a real failure surfaces
        attention_maps.xformers_attention(q, k, v)


def test_xformers_import_failures_mean_unavailable(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("xformers"):
            raise OSError("libxformers.so: undefined symbol")
        return real_import(name, *args, **kwargs)

    attention_maps.xformers_ops.cache_clear()
    monkeypatch.setattr(builtins, "__import__", fake_import)
    try:
        assert attention_maps.xformers_ops() is None
    finally:
        attention_maps.xformers_ops.cache_clear()


# ---- train-diffusion ------------------------------------------------------------------------------

TINY = ["data.num_images=64", "data.image_size=32", "data.max_objects=2", "vae.block_out_channels=[8, 16]",
        "vae.norm_num_groups=4", "vae.batch_size=4", "unet.block_out_channels=[16, 32]", "unet.batch_size=4",
        "unet.cross_attention_dim=32", "text_encoder.hidden_size=32", "text_encoder.intermediate_size=32",
        "text_encoder.num_hidden_layers=1", "unet.warmup_steps=2", "train.threads=1", "train.log_every=1",
        "train.progress=false"]


def test_train_diffusion_resumes_and_saves_a_directory_that_loads_like_sd(tmp_path):
    from diffusers import StableDiffusionPipeline

    from dapo_fast.diffusion.generate import load_sd_directory

    fresh = str(tmp_path / "fresh")
    cfg = load_diffusion_config(None, TINY + [f"train.out_dir={fresh}", "vae.steps=3", "unet.steps=4",
                                              "train.ckpt_every=2"])
    done = train_diffusion(cfg, log=lambda *_: None)
    other = load_diffusion_config(None, TINY + [f"train.out_dir={fresh}", "vae.steps=3", "unet.steps=5"])
    with pytest.raises(ValueError, match="different 'unet' config"):
        train_diffusion(other, log=lambda *_: None)  # a checkpoint only continues its own run
    log = [json.loads(line) for line in open(os.path.join(fresh, "train_log.jsonl"))]
    assert [r["step"] for r in log if r["stage"] == "vae"] == [1, 2, 3]
    assert [r["step"] for r in log if r["stage"] == "unet"] == [1, 2, 3, 4]
    assert all(np.isfinite(r.get("loss", r.get("weighted_l1"))) for r in log)
    # resumed from the stage-2 checkpoint at step 2, the run ends where the uninterrupted one did
    cut = str(tmp_path / "cut")
    first = load_diffusion_config(None, TINY + [f"train.out_dir={cut}", "vae.steps=3", "unet.steps=4",
                                                "train.ckpt_every=2"])
    _stop_after(first, 2)
    # the stopped run's checkpoint exported as a model, labelled with its step: the model a run
    # of 2 UNet steps saves
    exported = export_checkpoint(first, log=lambda *_: None)
    assert exported.endswith("model_step2")
    with open(os.path.join(exported, "dapo_fast_training.json")) as f:
        assert json.load(f)["unet_step"] == 2
    two = load_diffusion_config(None, TINY + [f"train.out_dir={tmp_path / 'two'}", "vae.steps=3", "unet.steps=2"])
    short = load_sd_directory(train_diffusion(two, log=lambda *_: None)["model_dir"])
    partial = load_sd_directory(exported)
    for part in ("unet", "text_encoder", "vae"):
        expected = getattr(short, part).state_dict()
        for key, value in getattr(partial, part).state_dict().items():
            torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    assert partial.vae.config.scaling_factor == short.vae.config.scaling_factor
    # a run stopped between checkpoints has logged steps past its checkpoint: the resumed run
    # drops them and logs them again, so the log reads as one uninterrupted run
    with open(os.path.join(cut, "train_log.jsonl"), "a") as f:
        f.write(json.dumps(dict(stage="unet", step=3, loss=-1.0)) + "\n")
    second = load_diffusion_config(None, TINY + [f"train.out_dir={cut}", "vae.steps=3", "unet.steps=4",
                                                 "train.ckpt_every=2"])
    train_diffusion(second, log=lambda *_: None)
    resumed_log = [json.loads(line) for line in open(os.path.join(cut, "train_log.jsonl"))]
    assert [(r["stage"], r["step"], r.get("loss")) for r in resumed_log] == \
        [(r["stage"], r["step"], r.get("loss")) for r in log]
    a = torch.load(os.path.join(fresh, "checkpoint.pt"), weights_only=True)
    b = torch.load(os.path.join(cut, "checkpoint.pt"), weights_only=True)
    for key in a["ema_unet"]:
        torch.testing.assert_close(a["ema_unet"][key], b["ema_unet"][key], rtol=0, atol=0)

    sd = load_sd_directory(done["model_dir"])
    assert sd.unet.config.sample_size == 16 and sd.vae.config.scaling_factor != 1.0
    assert sd.tokenizer.tokenize("a red ring") == ["a</w>", "red</w>", "ring</w>"]
    pipe = StableDiffusionPipeline.from_pretrained(done["model_dir"], safety_checker=None)
    images = pipe("a red ring", num_inference_steps=2, output_type="np",
                  generator=torch.Generator().manual_seed(0)).images
    assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()


def _stop_after(cfg, unet_step):
    """Run ``cfg`` and stop it (as a crash would) right after the UNet checkpoint at ``unet_step``."""
    import dapo_fast.train.checkpoint as checkpoint

    real_save = checkpoint.save_checkpoint

    class Stop(Exception):
        pass

    def save(path, state):
        real_save(path, state)
        if state.get("stage") == "unet" and state["step"] == unet_step:
            raise Stop

    checkpoint.save_checkpoint = save  # train-diffusion writes every checkpoint through it
    try:
        with pytest.raises(Stop):
            train_diffusion(cfg, log=lambda *_: None)
    finally:
        checkpoint.save_checkpoint = real_save


def test_package_data_carries_every_file_of_a_saved_model(sd_dir, tmp_path):
    """The shipped small model is package data: the globs of pyproject.toml (setuptools expands
    them with glob, relative to the package) must take every file save_pretrained writes."""
    import glob
    import shutil
    import tomllib

    root = os.path.join(os.path.dirname(__file__), "..", "..")
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        patterns = tomllib.load(f)["tool"]["setuptools"]["package-data"]["dapo_fast"]
    package = tmp_path / "dapo_fast"
    shutil.copytree(sd_dir, package / "assets" / "small_sd")
    written = {os.path.relpath(os.path.join(d, n), package) for d, _, names in os.walk(package) for n in names}
    carried = {os.path.relpath(p, package) for pattern in patterns for p in glob.glob(str(package / pattern))}
    assert {"assets/small_sd/model_index.json", "assets/small_sd/unet/diffusion_pytorch_model.safetensors"} <= written
    assert written == carried


def test_config_errors_name_the_key(tmp_path):
    from dapo_fast.train.config import ConfigError

    with pytest.raises(ConfigError, match="unet.cross_attention_dim"):
        load_diffusion_config(None, ["unet.cross_attention_dim=48"])
    with pytest.raises(ConfigError, match="unknown config key 'vae.channels'"):
        load_diffusion_config(None, ["vae.channels=[4]"])
    with pytest.raises(ConfigError, match="data.image_size"):
        load_diffusion_config(None, ["data.image_size=66"])
    cfg = load_diffusion_config(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "diffusion.yaml"))
    assert cfg.unet.cross_attention_dim == cfg.text_encoder.hidden_size


def test_synthetic_training_images_are_deterministic_and_resized():
    images, captions = synthetic_images(6, 32, seed=5, min_objects=1, max_objects=3, chunk=4)
    again, captions_again = synthetic_images(6, 32, seed=5, min_objects=1, max_objects=3, chunk=6)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.equal(images, again) and captions == captions_again


# ---- fidelity check -------------------------------------------------------------------------------

def test_connected_components_match_opencv(seed):
    cv2 = pytest.importorskip("cv2")
    mask = torch.rand(37, 29) < 0.45
    ours = connected_components(mask)
    count, theirs = cv2.connectedComponents(mask.numpy().astype(np.uint8), connectivity=8)
    theirs = torch.from_numpy(theirs).long()
    assert (ours == 0).equal(theirs == 0)
    assert ours.unique().numel() == count  # same number of components (incl. background)
    pairs = set(zip(ours[mask].tolist(), theirs[mask].tolist()))
    assert len(pairs) == count - 1  # a one-to-one correspondence of the labels


def test_shape_check_finds_every_shape_the_benchmark_draws():
    from dapo_fast.data.synthetic import COLOURS, SHAPES, SyntheticConfig, generate_sample

    names, templates = shape_templates()
    assert names == tuple(SHAPES) and templates.shape == (len(SHAPES), 16, 16)
    rng = np.random.default_rng(123)
    cfg = SyntheticConfig(min_objects=1, max_objects=1, min_radius=0.12, max_radius=0.14)
    seen = set()
    while len(seen) < len(SHAPES):
        record = generate_sample(rng, cfg, num_objects=1)
        colour, shape = record["phrases"][0].split()
        if shape in seen:
            continue
        seen.add(shape)
        image = torch.from_numpy(record["image"])
        assert check_entities(image, [f"{colour} {shape}"])[0]["found"], shape
        other_shape = SHAPES[(SHAPES.index(shape) + 1) % len(SHAPES)]
        other_colour = [c for c in COLOURS if c != colour][0]
        wrong = check_entities(image, [f"{colour} {other_shape}", f"{other_colour} {shape}"])
        assert not wrong[0]["found"] and not wrong[1]["found"] and not wrong[1]["colour"]


def test_fidelity_peaks_read_the_maps():
    names, rgb = palette()
    image = torch.full((3, 32, 32), 120, dtype=torch.uint8)
    image[:, 4:14, 4:14] = rgb[names.index("red")].to(torch.uint8)[:, None, None]
    assert colour_masks(image)[names.index("red")].sum() == 100
    on = torch.zeros(1, 8, 8)
    on[0, 2, 2] = 1.0                            # peak on the square (image px ~ 8-11)
    off = torch.zeros(1, 8, 8)
    off[0, 6, 6] = 1.0
    res = fidelity_of_images([image, image], [["red square"], ["red square"]], [on, off])
    assert res["found"] == 100.0 and res["peak_on_entity"] == 50.0 and res["peak_on_colour"] == 50.0
    with pytest.raises(ValueError, match="not a colour of the synthetic palette"):
        check_entities(image, ["pink square"])
