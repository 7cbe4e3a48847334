"""Integration, fully offline: tiny UNet2DConditionModel / CLIPTextModel / AutoencoderKL built
from configs; fused capture vs the Attend-and-Excite explicit capture; attention-guided step."""
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from dapo_fast.diffusion import (AttendExciteSchedule, AttentionMapProcessor, AttentionMapStore,  # noqa: E402
                                 ExplicitAttentionStore, attention_guided_step, clip_tokenizer, entity_token_spans,
                                 register, register_explicit, token_attention_maps, unregister)
from dapo_fast.ops import attention_guidance_loss  # noqa: E402
from dapo_fast.diffusion.models import encode_text  # noqa: E402
from dapo_fast.diffusion.tiny_sd import tiny_text_encoder, tiny_unet, tiny_vae  # noqa: E402

PROMPT = "a young boy playing his toy quad"


@pytest.fixture(scope="module")
def sd():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    # the tiny models gain nothing from intra-op threads, and on a shared machine the OpenMP
    # hand-offs of their many small ops cost 10x the compute
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    tokenizer = clip_tokenizer()
    text_encoder = tiny_text_encoder()
    with torch.no_grad():
        embeds = encode_text(text_encoder, tokenizer, ["", PROMPT])  # [uncond; cond]
    yield dict(unet=tiny_unet(), vae=tiny_vae(), tokenizer=tokenizer, embeds=embeds,
               spans=entity_token_spans(tokenizer, PROMPT, ["a young boy", "his toy quad"]))
    torch.set_num_threads(threads)


def denoise_two_steps(unet, embeds, store, seed=0, encoder_attention_mask=None):
    """Two DDIM steps with classifier-free guidance (scale 7.5); the store's maps after each."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(2)
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(seed))
    maps = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            noise = unet(torch.cat([latents] * 2), t, encoder_hidden_states=embeds,
                         encoder_attention_mask=encoder_attention_mask).sample
            uncond, cond = noise.chunk(2)
            latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
            maps.append(store.maps(16).clone())
    return latents, maps


def test_fused_maps_equal_explicit_capture(sd):
    unet, embeds = sd["unet"], sd["embeds"]
    defaults = {name: type(p) for name, p in unet.attn_processors.items()}
    store = AttentionMapStore((16,), classifier_free_guidance=True)
    replaced = register(unet, store)
    try:
        fused_latents, fused_maps = denoise_two_steps(unet, embeds, store)
        assert store.layer_count(16) == 3           # the three 16x16 cross-attention layers, once per step
        assert store.steps_seen == 1                # the second UNet call started a new step
    finally:
        unregister(unet)
    # only cross-attention was replaced; self-attention kept its processor; all restored
    assert replaced and all(name.endswith("attn2.processor") for name in replaced)
    assert {name: type(p) for name, p in unet.attn_processors.items()} == defaults

    explicit = ExplicitAttentionStore(classifier_free_guidance=True)
    register_explicit(unet, explicit)
    try:
        from diffusers import DDIMScheduler  # noqa: F401

        explicit_latents, _ = denoise_two_steps(unet, embeds, _ExplicitView(explicit))
        explicit_maps = _ExplicitView.history
    finally:
        unregister(unet)
    assert any(k.endswith("_self") for k in explicit.step_store)   # A&E stores self-attention too
    for got, want in zip(fused_maps, explicit_maps):
        assert got.shape == (1, 256, 77)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
        torch.testing.assert_close(got.sum(-1), torch.ones(1, 256), rtol=0, atol=1e-5)
    # SDPA vs explicit bmm round differently; guidance scale 7.5 amplifies that to ~3e-5
    torch.testing.assert_close(fused_latents, explicit_latents, rtol=1e-3, atol=1e-4)


class _ExplicitView:
    """Gives ExplicitAttentionStore the .maps(res) the denoising loop reads, keeping a history."""
    history = []

    def __init__(self, store):
        self.store = store
        _ExplicitView.history = []

    def maps(self, res):
        m = self.store.maps(res)
        _ExplicitView.history.append(m.clone())
        return m


def test_attention_mask_matches_explicit(sd):
    unet, embeds = sd["unet"], sd["embeds"]
    mask = torch.zeros(2, 77)
    mask[:, :9] = 1                                  # keep <sot> + 7 tokens + <eot>
    store = AttentionMapStore((16,), classifier_free_guidance=True)
    register(unet, store)
    try:
        _, fused = denoise_two_steps(unet, embeds, store, encoder_attention_mask=mask)
    finally:
        unregister(unet)
    explicit = ExplicitAttentionStore(classifier_free_guidance=True)
    register_explicit(unet, explicit)
    try:
        denoise_two_steps(unet, embeds, _ExplicitView(explicit), encoder_attention_mask=mask)
    finally:
        unregister(unet)
    for got, want in zip(fused, _ExplicitView.history):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert fused[-1][:, :, 9:].max() < 1e-6           # masked tokens get (numerically) nothing


def test_general_mask_falls_back_to_explicit_head_mean(sd):
    unet, embeds = sd["unet"], sd["embeds"]
    processor = AttentionMapProcessor(AttentionMapStore((16,)), "probe")
    attn = unet.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn2")
    hidden = torch.randn(1, 256, 32)
    mask = torch.zeros(1, 256, 77)                   # a per-query mask: not a key bias
    mask[:, :100, 20:] = -10000.0
    out = processor(attn, hidden, embeds[1:], attention_mask=mask)
    got = processor.store.maps(16)
    d = attn.to_q.out_features // attn.heads
    q = attn.to_q(hidden).view(1, -1, attn.heads, d).transpose(1, 2)
    k = attn.to_k(embeds[1:]).view(1, -1, attn.heads, d).transpose(1, 2)
    want = ((q @ k.transpose(-1, -2)) * attn.scale + mask[:, None]).softmax(-1).mean(1)
    torch.testing.assert_close(got, want.detach(), rtol=0, atol=1e-5)
    assert out.shape == hidden.shape


def test_register_twice_and_unregister_without_register(sd):
    unet = sd["unet"]
    store = AttentionMapStore()
    register(unet, store)
    try:
        with pytest.raises(RuntimeError, match="already registered"):
            register(unet, store)
    finally:
        unregister(unet)
    with pytest.raises(RuntimeError, match="no dapo_fast.diffusion processors"):
        unregister(unet)
    with pytest.raises(RuntimeError, match="no cross-attention map"):
        AttentionMapStore().maps()
    with pytest.raises(ValueError, match="not captured"):
        AttentionMapStore().maps(32)


def test_guided_step_gradient_matches_explicit_capture(sd):
    """grad of L_A w.r.t. the latents through the fused op == through explicit probabilities."""
    unet, embeds, spans = sd["unet"], sd["embeds"][1:], sd["spans"]
    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    heat = torch.rand(1, 2, 16, 16, generator=torch.Generator().manual_seed(2))

    def grad_with(store, view):
        z = latents.clone().requires_grad_()
        unet(z, 500, encoder_hidden_states=embeds)
        maps = token_attention_maps(view.maps(16), spans, 8)
        (g,) = torch.autograd.grad(attention_guidance_loss(heat, maps).sum(), z)
        return g

    store = AttentionMapStore((16,))
    register(unet, store)
    try:
        fused = grad_with(store, store)
    finally:
        unregister(unet)
    explicit = ExplicitAttentionStore()
    register_explicit(unet, explicit)
    try:
        want = grad_with(explicit, explicit)
    finally:
        unregister(unet)
    assert want.abs().max() > 0
    torch.testing.assert_close(fused, want, rtol=1e-4, atol=1e-6)


def test_attention_guided_step_lowers_loss(sd):
    unet, vae, embeds, spans = sd["unet"], sd["vae"], sd["embeds"][1:], sd["spans"]
    torch.manual_seed(0)
    head = torch.nn.Conv2d(3, 2, 3, padding=1)

    def grounder(images):  # a fixed random "grounder": [B, 3, 32, 32] -> [B, 2, 32, 32] in (0, 1)
        return torch.sigmoid(head(images))

    latents = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    schedule = AttendExciteSchedule()
    assert schedule.step_size(0) == pytest.approx(20.0) and schedule.step_size(49) == pytest.approx(20 * 0.5 ** 0.5)
    assert schedule.applies(24) and not schedule.applies(25) and schedule.threshold(10) == 0.5
    defaults = {name: type(p) for name, p in unet.attn_processors.items()}
    step = attention_guided_step(unet, latents, 500, embeds, grounder, vae, [spans], step_size=schedule.step_size(0),
                                 last_index=8)
    assert {name: type(p) for name, p in unet.attn_processors.items()} == defaults   # temporary registration
    assert step.iterations == 1 and not step.latents.requires_grad
    assert not torch.equal(step.latents, latents)
    # L_A at the updated latents, measured the same way
    after = attention_guided_step(unet, step.latents, 500, embeds, grounder, vae, [spans], step_size=0.0,
                                  last_index=8)
    assert after.loss.item() < step.loss.item(), (step.loss, after.loss)
    refined = attention_guided_step(unet, latents, 500, embeds, grounder, vae, [spans], step_size=schedule.step_size(0),
                                    last_index=8, refine_threshold=-1e9, max_refinement_steps=2)
    assert refined.iterations == 3
    # the schedule's defaults: alpha_10 = 20 sqrt(linspace(1, .5, 50)[10]), threshold 0.5 at step 10
    default = attention_guided_step(unet, latents, 500, embeds, grounder, vae, [spans], step_index=10, refine=True,
                                    max_refinement_steps=1, last_index=8)
    assert default.step_size == pytest.approx(20 * (1 - 0.5 * 10 / 49) ** 0.5)
    assert default.iterations == (1 if default.loss.item() <= 0.5 else 2)
