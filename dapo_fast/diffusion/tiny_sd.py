"""Tiny Stable-Diffusion-shaped models built from configs (no download), for tests, benchmarks
and smoke runs: a UNet2DConditionModel with 16x16 and 8x8 cross-attention on 16x16 latents
(SD-1.x layout: self-attention + cross-attention per transformer block, 77 text tokens), a
2-layer CLIPTextModel over CLIP's real vocabulary, and a 2x AutoencoderKL. Random weights,
fixed seed."""
import torch

from dapo_fast.diffusion import clip_tokenizer


def tiny_unet(seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8,
    ).eval()


def tiny_text_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=77, bos_token_id=49406,
                            eos_token_id=49407, pad_token_id=49407)
    return CLIPTextModel(config).eval()


def tiny_vae(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                         up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), block_out_channels=(8, 16),
                         latent_channels=4, norm_num_groups=4, layers_per_block=1, sample_size=32).eval()


def encode_prompts(text_encoder, prompts, tokenizer=None):
    tokenizer = tokenizer or clip_tokenizer()
    ids = tokenizer(prompts, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]
