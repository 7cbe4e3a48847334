"""Stable-Diffusion-layout models built from configs: UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, a CLIP tokenizer restricted to a word list, SD-1.x's noise schedule, and the
directory layout ``save_pretrained`` writes (what ``dapo-fast generate --model`` reads).

The architectures are SD-1.x's in miniature: self-attention + cross-attention per transformer
block, 77 text positions, a KL autoencoder whose latents the UNet denoises. Only the sizes come
from the config, so a model trained here loads through the same code path as a real SD checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Iterable, List, Sequence, Tuple

import torch

__all__ = ["UNetConfig", "VAEConfig", "TextEncoderConfig", "build_unet", "build_vae", "build_text_encoder",
           "vocabulary_tokenizer", "sd_noise_scheduler", "save_sd_directory", "encode_text", "small_model_dir", "SD_COMPONENTS", "SMALL_MODEL_COMMAND"]

# the sub-folders of a diffusers Stable Diffusion directory and the file that marks each one
SD_COMPONENTS = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json",
                 "tokenizer": "tokenizer_config.json", "scheduler": "scheduler_config.json"}
TEXT_POSITIONS = 77  # SD-1.x pads every prompt to CLIP's 77 positions
# the small model trained here ships inside the package; this command reproduces it
SMALL_MODEL_COMMAND = ("dapo-fast train-diffusion --config configs/diffusion.yaml && "
                       "cp -r runs/diffusion/model dapo_fast/assets/small_sd")


def small_model_dir() -> str:
    """The small text-to-image model trained on the synthetic benchmark (shipped with the package)."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "small_sd")
    if not os.path.exists(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(f"the small text-to-image model is not at {path}; reproduce it with "
                                f"`{SMALL_MODEL_COMMAND}`")
    return path


@dataclasses.dataclass
class UNetConfig:
    block_out_channels: List[int] = dataclasses.field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    attention_heads: int = 2  # diffusers' ``attention_head_dim`` (it is the head count in SD-1.x UNets)
    cross_attention_dim: int = 64  # = the text encoder's hidden size
    norm_num_groups: int = 8


@dataclasses.dataclass
class VAEConfig:
    block_out_channels: List[int] = dataclasses.field(default_factory=lambda: [16, 32, 32])
    latent_channels: int = 4
    layers_per_block: int = 1
    norm_num_groups: int = 8
    mid_block_attention: bool = False


@dataclasses.dataclass
class TextEncoderConfig:
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4


def build_unet(cfg: UNetConfig, sample_size: int, in_channels: int = 4):
    """A UNet2DConditionModel with cross-attention at every level (SD-1.x's block types)."""
    from diffusers import UNet2DConditionModel

    levels = len(cfg.block_out_channels)
    return UNet2DConditionModel(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels,
        layers_per_block=cfg.layers_per_block, block_out_channels=tuple(cfg.block_out_channels),
        norm_num_groups=cfg.norm_num_groups, down_block_types=("CrossAttnDownBlock2D",) * levels,
        up_block_types=("CrossAttnUpBlock2D",) * levels, cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=cfg.attention_heads)


def build_vae(cfg: VAEConfig, image_size: int):
    """An AutoencoderKL that downsamples by 2^(levels-1)."""
    from diffusers import AutoencoderKL

    levels = len(cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(cfg.block_out_channels),
        latent_channels=cfg.latent_channels, norm_num_groups=cfg.norm_num_groups,
        layers_per_block=cfg.layers_per_block, sample_size=image_size,
        mid_block_add_attention=cfg.mid_block_attention)


def build_text_encoder(cfg: TextEncoderConfig, tokenizer):
    """A CLIPTextModel over ``tokenizer``'s vocabulary (causal, 77 positions, like SD-1.x's)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        max_position_embeddings=TEXT_POSITIONS, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return CLIPTextModel(config)


def sd_noise_scheduler():
    """SD-1.x's training noise schedule (scaled-linear betas 0.00085 -> 0.012 over 1000 steps)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                         beta_schedule="scaled_linear", clip_sample=False, steps_offset=1,
                         prediction_type="epsilon")


# ---- a CLIP tokenizer over a word list ----------------------------------------------------------

def _bpe_merges(word: str, ranks: Dict[Tuple[str, str], int]) -> Tuple[List[str], List[Tuple[str, str]]]:
    """CLIP's byte-pair encoding of one lower-case word: (tokens, merges applied, in order)."""
    symbols = list(word[:-1]) + [word[-1] + "</w>"]
    applied = []
    while len(symbols) > 1:
        pairs = {(a, b) for a, b in zip(symbols, symbols[1:])}
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        applied.append(best)
        merged, i = [], 0
        while i < len(symbols):  # every occurrence, left to right, as CLIP's bpe()
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols, applied


def vocabulary_tokenizer(words: Iterable[str], directory: str):
    """A transformers CLIPTokenizer that tokenises ``words`` exactly as CLIP does, with a
    vocabulary of CLIP's 512 byte tokens plus the merges these words need (other text falls
    back to shorter pieces, never to unknown). Written to ``directory`` (vocab.json,
    merges.txt) and loaded from there, so ``save_pretrained`` copies it like any tokenizer.

    A few hundred embeddings instead of CLIP's 49408 keep a small text encoder small."""
    from open_clip.tokenizer import SimpleTokenizer
    from transformers import CLIPTokenizer

    simple = SimpleTokenizer()
    base = list(simple.byte_encoder.values())
    vocab = base + [b + "</w>" for b in base]
    merges: Dict[Tuple[str, str], int] = {}
    for word in sorted({w.lower() for w in words}):
        if not word.isascii() or not word.isalnum():
            raise ValueError(f"vocabulary words must be ASCII letters and digits, got {word!r}")
        for pair in _bpe_merges(word, simple.bpe_ranks)[1]:
            merges[pair] = simple.bpe_ranks[pair]
    ordered = sorted(merges, key=merges.get)
    vocab += ["".join(pair) for pair in ordered] + ["<|startoftext|>", "<|endoftext|>"]
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({token: index for index, token in enumerate(vocab)}, f)
    with open(os.path.join(directory, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in ordered))
    return CLIPTokenizer(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
                         model_max_length=TEXT_POSITIONS, bos_token="<|startoftext|>", eos_token="<|endoftext|>",
                         unk_token="<|endoftext|>", pad_token="<|endoftext|>")


def save_sd_directory(path: str, unet, vae, text_encoder, tokenizer, scheduler) -> str:
    """Write the five components as a StableDiffusionPipeline directory (safetensors weights,
    model_index.json; no safety checker): loadable by diffusers' pipelines and by
    :func:`dapo_fast.diffusion.generate.load_sd_directory`."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def encode_text(text_encoder, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """[B, 77, D] last hidden states of ``prompts`` padded to 77 positions (SD-1.x's conditioning)."""
    ids = tokenizer(list(prompts), padding="max_length", max_length=TEXT_POSITIONS, truncation=True,
                    return_tensors="pt").input_ids.to(text_encoder.device)
    return text_encoder(ids)[0]
