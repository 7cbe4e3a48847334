"""Tiny Stable-Diffusion-shaped models built from configs (no download), for tests, benchmarks
and smoke runs: a UNet2DConditionModel with 16x16 and 8x8 cross-attention on 16x16 latents
(SD-1.x layout: self-attention + cross-attention per transformer block, 77 text tokens), a
2-layer CLIPTextModel, and a 2x AutoencoderKL. Random weights, fixed seed.

:func:`tiny_sd_directory` writes them as a StableDiffusionPipeline directory (what
``dapo-fast generate --model`` reads), with a CLIP tokenizer over the synthetic benchmark's words.
"""
import torch

from dapo_fast.diffusion.models import (TextEncoderConfig, UNetConfig, VAEConfig, build_text_encoder, build_unet,
                                        build_vae, save_sd_directory, sd_noise_scheduler, vocabulary_tokenizer)
from dapo_fast.diffusion.token_maps import clip_tokenizer

TINY_UNET = UNetConfig(block_out_channels=[32, 64], layers_per_block=1, attention_heads=8, cross_attention_dim=32,
                       norm_num_groups=8)
TINY_VAE = VAEConfig(block_out_channels=[8, 16], latent_channels=4, layers_per_block=1, norm_num_groups=4,
                     mid_block_attention=True)
TINY_TEXT = TextEncoderConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4)


def tiny_unet(seed: int = 0):
    torch.manual_seed(seed)
    return build_unet(TINY_UNET, sample_size=16).eval()


def tiny_text_encoder(seed: int = 0, tokenizer=None):
    """Over CLIP's full vocabulary by default (``tokenizer``: any CLIP tokenizer)."""
    torch.manual_seed(seed)
    return build_text_encoder(TINY_TEXT, tokenizer or clip_tokenizer()).eval()


def tiny_vae(seed: int = 0):
    torch.manual_seed(seed)
    return build_vae(TINY_VAE, image_size=32).eval()


def tiny_sd_directory(path: str, seed: int = 0) -> str:
    """Save a tiny random SD (32 px images, 16x16 latents) at ``path`` with ``save_pretrained``."""
    from dapo_fast.diffusion.train_diffusion import caption_words

    tokenizer = vocabulary_tokenizer(caption_words(), f"{path}.tokenizer-source")
    return save_sd_directory(path, tiny_unet(seed), tiny_vae(seed), tiny_text_encoder(seed, tokenizer), tokenizer,
                             sd_noise_scheduler())
