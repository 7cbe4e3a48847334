"""DAPO attention ops at the issue's sizes.

(a) cross_attention_probs_mean at SD-1.4's 16x16 cross-attention: B=2 (CFG), 8 heads, HW=256,
    T=77, d=160, vs materialise-softmax-mean (eager, torch.compile) and Attend-and-Excite's form
    (baddbmm scores on [B*heads], softmax, stored, averaged).
(b) one denoising step (CFG batch) of the tiny UNet: default SDPA processors vs the fused
    capture vs the explicit Attend-and-Excite capture (every layer stored, averaged after).
(c) attention_guidance_loss / diffusion_guided_loss forward+backward at B=32, E=8, 64x64 vs the
    pairwise reference eager and under torch.compile (and the literal double loop, eager).
"""
import copy

import torch

from dapo_fast.bench.registry import Case, register
from dapo_fast.ops import attention_guidance_loss, cross_attention_probs_mean, diffusion_guided_loss
from dapo_fast.ops._reference import dapo_losses as loss_ref
from dapo_fast.ops._reference.cross_attention_probs_mean import cross_attention_probs_mean as probs_ref


def _attend_and_excite_form(q, k, scale):
    """A&E: scores = baddbmm(empty, q, k^T, beta=0, alpha=scale) on [B*heads, HW, d], softmax,
    the [B*heads, HW, T] probabilities stored, then averaged over heads."""
    b, h, n, d = q.shape
    qb, kb = q.reshape(b * h, n, d), k.reshape(b * h, k.shape[2], d)
    empty = torch.empty(b * h, n, kb.shape[1], dtype=q.dtype)
    probs = torch.baddbmm(empty, qb, kb.transpose(-1, -2), beta=0, alpha=scale).softmax(dim=-1)
    return probs.reshape(b, h, n, -1).mean(1)


def _probs_case(size, batch, heads, rows, keys, dim, quick):
    scale = dim ** -0.5

    def make():
        torch.manual_seed(0)
        # the [B, HW, heads, d] projections diffusers makes, viewed as [B, heads, HW, d]
        q = torch.randn(batch, rows, heads, dim).transpose(1, 2)
        k = torch.randn(batch, keys, heads, dim).transpose(1, 2)
        return {"q": q.requires_grad_(), "k": k.requires_grad_()}

    compiled = torch.compile(probs_ref, dynamic=False)
    impls = {
        "dapo_fast[cpu]": lambda i: cross_attention_probs_mean(i["q"], i["k"], scale, backend="cpu"),
        "reference": lambda i: probs_ref(i["q"], i["k"], scale),
        "reference[compile]": lambda i: compiled(i["q"], i["k"], scale),
        "attend_and_excite": lambda i: _attend_and_excite_form(i["q"], i["k"], scale),
    }
    return register(Case(
        op="cross_attention_probs_mean", size=size, make_inputs=make, impls=impls, ours=["dapo_fast[cpu]"],
        baselines=["reference", "reference[compile]", "attend_and_excite"], grad_inputs=["q", "k"],
        bytes_moved=4 * (batch * heads * (rows + keys) * dim + batch * rows * keys), quick=quick,
        note=f"B={batch} heads={heads} HW={rows} T={keys} d={dim}",
    ))


def _unet_step_case():
    def make():
        from dapo_fast.diffusion import (AttentionMapStore, ExplicitAttentionStore, register as register_fused,
                                         register_explicit)
        from dapo_fast.diffusion.tiny_sd import tiny_unet

        torch.manual_seed(0)
        default = tiny_unet()
        fused, explicit = copy.deepcopy(default), copy.deepcopy(default)
        fused_store = AttentionMapStore((16,), classifier_free_guidance=True)
        register_fused(fused, fused_store)
        explicit_store = ExplicitAttentionStore(classifier_free_guidance=True)
        register_explicit(explicit, explicit_store)
        return {"latents": torch.randn(2, 4, 16, 16), "embeds": torch.randn(2, 77, 32), "default": default,
                "fused": fused, "fused_store": fused_store, "explicit": explicit, "explicit_store": explicit_store}

    def step(unet_key, store_key):
        def run(i):
            out = i[unet_key](i["latents"], 500, encoder_hidden_states=i["embeds"]).sample
            if store_key is not None:
                return out, i[store_key].maps(16)
            return out
        return run

    impls = {
        "dapo_fast[capture]": step("fused", "fused_store"),
        "default_processors": step("default", None),
        "attend_and_excite_capture": step("explicit", "explicit_store"),
    }
    return register(Case(
        op="unet_step_capture", size="tiny-unet-cfg", make_inputs=make, impls=impls,
        ours=["dapo_fast[capture]"], baselines=["default_processors", "attend_and_excite_capture"], quick=True,
        note="tiny UNet2DConditionModel (32/64 channels, 16x16 latents, CFG batch 2), 16x16 maps",
    ))


def _loss_cases(size, batch, entities, height, width, quick):
    def make():
        torch.manual_seed(0)
        return {"h": torch.rand(batch, entities, height, width), "a": torch.rand(batch, entities, height, width,
                                                                                 requires_grad=True),
                "valid": torch.ones(batch, entities, dtype=torch.bool)}

    pairwise = loss_ref.attention_guidance_loss_pairwise_vectorised
    compiled_pairwise = torch.compile(pairwise, dynamic=False)
    guided_compiled = torch.compile(loss_ref.diffusion_guided_loss, dynamic=False)
    # read h and a once, write the gradient of a once
    bytes_moved = 4 * 3 * batch * entities * height * width
    register(Case(
        op="attention_guidance_loss", size=size, make_inputs=make,
        impls={
            "dapo_fast[cpu]": lambda i: attention_guidance_loss(i["h"], i["a"], i["valid"], backend="cpu"),
            "reference[pairwise]": lambda i: pairwise(i["h"], i["a"], i["valid"]),
            "reference[pairwise,compile]": lambda i: compiled_pairwise(i["h"], i["a"], i["valid"]),
            "reference[double-loop]": lambda i: loss_ref.attention_guidance_loss(i["h"], i["a"], i["valid"]),
        },
        ours=["dapo_fast[cpu]"], baselines=["reference[pairwise]", "reference[pairwise,compile]"],
        grad_inputs=["a"], bytes_moved=bytes_moved, quick=quick,
        note="bytes = h + a read once + grad_a written once (fwd+bwd minimum); GB/s column uses fwd time",
    ))
    register(Case(
        op="diffusion_guided_loss", size=size,
        make_inputs=lambda: {**make(), "h": make()["h"].requires_grad_(), "a": make()["a"].detach()},
        impls={
            "dapo_fast[cpu]": lambda i: diffusion_guided_loss(i["h"], i["a"], i["valid"], "none", backend="cpu"),
            "reference": lambda i: loss_ref.diffusion_guided_loss(i["h"], i["a"], i["valid"]),
            "reference[compile]": lambda i: guided_compiled(i["h"], i["a"], i["valid"]),
        },
        ours=["dapo_fast[cpu]"], baselines=["reference", "reference[compile]"], grad_inputs=["h"],
        bytes_moved=bytes_moved, quick=quick,
        note="bytes = h + a read once + grad_h written once (fwd+bwd minimum); GB/s column uses fwd time",
    ))


_probs_case("sd14-16x16", 2, 8, 256, 77, 160, quick=True)
_unet_step_case()
_loss_cases("b32-e8-64x64", 32, 8, 64, 64, quick=False)
_loss_cases("small", 4, 3, 32, 32, quick=True)
