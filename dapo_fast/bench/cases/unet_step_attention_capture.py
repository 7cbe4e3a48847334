"""One denoising step (CFG batch) of the tiny UNet with the cross-attention maps captured: the
fused capture (dapo_fast.diffusion.register, cross_attention_probs_mean inside the processors) vs
diffusers' default processors (no capture) vs the explicit Attend-and-Excite capture (every
layer's probabilities stored, averaged after). Not an op: the end-to-end use of one."""
import copy

import torch

from dapo_fast.bench.registry import Case, register


def _case():
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
        op="unet_step_attention_capture", size="tiny-unet-cfg", make_inputs=make, impls=impls,
        ours=["dapo_fast[capture]"], baselines=["default_processors", "attend_and_excite_capture"], quick=True,
        note="tiny UNet2DConditionModel (32/64 channels, 16x16 latents, CFG batch 2), 16x16 maps",
    ))


_case()
