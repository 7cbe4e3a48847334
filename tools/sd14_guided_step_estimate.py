"""On-paper cost of one DAPO eq. 4 guided denoising step for SD-1.4 at 512x512 (batch 1).

Counts, on the meta device (no weights, no download): FLOPs with torch's FlopCounterMode, and the
bytes of the activations autograd saves for the backward to the latents (saved_tensors_hooks),
for SD-1.4's UNet (diffusers' default block layout, cross-attention dim 768) with the fused
capture (SDPA: the probabilities are never stored) and with Attend-and-Excite's explicit capture
(every layer's probabilities materialised and kept), plus the AutoencoderKL decoder that decodes
the latents for the grounder. Prints a table; docs/diffusion.md turns it into time on an
H100-class GPU with stated peak rates.

    python tools/sd14_guided_step_estimate.py
"""
import torch
from torch.utils.flop_counter import FlopCounterMode


def sd14_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)


def sd14_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=512)


SPATIAL = {64 * 64, 32 * 32, 16 * 16, 8 * 8}  # SD-1.4's attention lengths at 512 px


def measure(fn, backward: bool, weight_shapes):
    """(FLOPs, bytes of saved activations, bytes of saved attention probabilities). Weights that
    autograd keeps for the input gradients are not counted (they are read either way)."""
    activations, probabilities = [0], [0]

    def pack(t):
        size = t.numel() * t.element_size()
        if tuple(t.shape) in weight_shapes:
            pass
        elif t.dim() >= 3 and t.shape[-2] in SPATIAL and (t.shape[-1] in SPATIAL or t.shape[-1] == 77):
            probabilities[0] += size
        else:
            activations[0] += size
        return t

    with FlopCounterMode(display=False) as counter:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = fn()
        if backward:
            out.float().sum().backward()
    return counter.get_total_flops(), activations[0], probabilities[0]


def main():
    from dapo_fast.diffusion import (AttentionMapStore, ExplicitAttentionStore, register, register_explicit,
                                     unregister)

    dtype = torch.float16
    with torch.device("meta"):
        unet = sd14_unet().to(dtype).requires_grad_(False)
        vae = sd14_vae().to(dtype).requires_grad_(False)
        latents = torch.randn(1, 4, 64, 64, dtype=dtype)
        text = torch.randn(1, 77, 768, dtype=dtype)
        params_unet = sum(p.numel() for p in unet.parameters())
        params_dec = sum(p.numel() for n, p in vae.named_parameters() if n.startswith(("decoder", "post_quant")))

        def unet_step():
            z = latents.clone().requires_grad_()
            return unet(z, 500, encoder_hidden_states=text).sample

        weights = {tuple(p.shape) for p in unet.parameters()}
        rows = {}
        # on the meta device SDPA runs its math form, which saves the probabilities; on a GPU
        # the fused kernel keeps q, k, v, the output and the log-sum-exp instead, so for the
        # fused capture the probability column is what a GPU does not store
        register(unet, AttentionMapStore((16,)))
        rows["UNet fwd+bwd to latents, fused capture"] = measure(unet_step, True, weights)
        unregister(unet)
        register_explicit(unet, ExplicitAttentionStore())
        rows["UNet fwd+bwd to latents, A&E explicit capture"] = measure(unet_step, True, weights)
        unregister(unet)
        rows["UNet fwd, CFG batch 2 (the denoising step itself)"] = measure(
            lambda: unet(torch.cat([latents] * 2), 500, encoder_hidden_states=torch.cat([text] * 2)).sample, False,
            weights)
        rows["VAE decode 64x64 latents -> 512x512"] = measure(lambda: vae.decode(latents).sample, False, weights)
    print(f"UNet parameters {params_unet / 1e6:.0f}M, VAE decoder parameters {params_dec / 1e6:.1f}M (fp16)")
    print(f"{'part':<52}{'TFLOP':>8}{'saved activations GB':>22}{'saved probabilities GB':>24}")
    for name, (flops, saved, probs) in rows.items():
        print(f"{name:<52}{flops / 1e12:>8.3f}{saved / 1e9:>22.2f}{probs / 1e9:>24.2f}")


if __name__ == "__main__":
    main()
