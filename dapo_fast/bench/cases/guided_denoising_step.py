"""DAPO's eq. 4 step, end to end: one guided update (decode the latents, grounder heatmaps, UNet
forward with the cross-attention capture, per-entity maps, L_A, backward to the latents) with the
fused capture vs the same step with Attend-and-Excite's explicit capture (every layer's
probabilities stored, averaged afterwards). The backward runs inside each call, so the forward
column is the whole step.

It uses the small model shipped with the package (:func:`small_model_dir`) and a grounder with
the demo's architecture (random weights: the cost does not depend on them); without the shipped
model, the tiny random SD of :mod:`dapo_fast.diffusion.tiny_sd`. ``generate_images`` times
whole generations on the same setup.
"""
import copy

import torch

from dapo_fast.bench.registry import Case, register

BATCH = 8


def small_sd_setup():
    """(SD components, grounder heatmaps, BATCH prepared prompts, model name) for the cases."""
    from dapo_fast.diffusion.generate import (GrounderHeatmaps, load_sd_directory, prepare_prompts,
                                              sample_prompts)
    from dapo_fast.diffusion.models import small_model_dir
    from dapo_fast.data.sample import WordTokenizer
    from dapo_fast.diffusion.train_diffusion import caption_words
    from dapo_fast.models.heatmap_grounder import ModelConfig, build_model

    try:
        model_dir, name = small_model_dir(), "small_sd"
    except FileNotFoundError:
        import tempfile

        from dapo_fast.diffusion.tiny_sd import tiny_sd_directory

        model_dir, name = tiny_sd_directory(tempfile.mkdtemp(prefix="dapo_fast_bench_sd_") + "/sd"), "tiny_sd"
    sd = load_sd_directory(model_dir, "cpu", torch.float32)
    tokenizer = WordTokenizer(caption_words())
    torch.manual_seed(0)
    model, _ = build_model(ModelConfig(), len(tokenizer))
    grounder = GrounderHeatmaps(model, lambda text: tokenizer.encode(text, 8), image_size=64)
    prompts = prepare_prompts(sample_prompts(BATCH // 2, BATCH - BATCH // 2, seed=0), sd.tokenizer, seed=0)
    return sd, grounder, prompts, name


def _guided_step_case():
    state = {}

    def make():
        from dapo_fast.diffusion import (AttentionMapStore, ExplicitAttentionStore, register as register_fused,
                                         register_explicit)
        from dapo_fast.diffusion.models import encode_text

        sd, grounder, prompts, _ = small_sd_setup()
        explicit_unet = copy.deepcopy(sd.unet)
        fused_store = AttentionMapStore((16,))
        register_fused(sd.unet, fused_store)
        explicit_store = ExplicitAttentionStore()
        register_explicit(explicit_unet, explicit_store)
        with torch.no_grad():
            cond = encode_text(sd.text_encoder, sd.tokenizer, [p.prompt.caption for p in prompts])
        shape = (len(prompts), sd.unet.config.in_channels, sd.unet.config.sample_size, sd.unet.config.sample_size)
        entities = [p.prompt.entities for p in prompts]
        return dict(sd=sd, latents=torch.randn(shape, generator=torch.Generator().manual_seed(0)), cond=cond,
                    grounder=lambda images: grounder(images, entities),
                    spans=[[list(s) for s in p.token_spans] for p in prompts], eots=[p.eot for p in prompts],
                    fused=(sd.unet, fused_store), explicit=(explicit_unet, explicit_store))

    def step(which):
        from dapo_fast.diffusion import attention_guided_step

        def run(i):
            unet, store = i[which]
            return attention_guided_step(unet, i["latents"], 500, i["cond"], i["grounder"], i["sd"].vae, i["spans"],
                                         step_size=20.0, store=store, last_index=i["eots"]).latents
        return run

    return register(Case(
        op="guided_denoising_step", size=f"small-sd-b{BATCH}", make_inputs=make,
        impls={"dapo_fast[fused capture]": step("fused"), "attend_and_excite_capture": step("explicit")},
        ours=["dapo_fast[fused capture]"], baselines=["attend_and_excite_capture"], quick=True,
        note=f"eq. 4 update of {BATCH} latents (decode + grounder + UNet fwd with capture + L_A + backward); "
             "the shipped small model (16x16 latents), or the tiny random SD without it",
    ))


_guided_step_case()
