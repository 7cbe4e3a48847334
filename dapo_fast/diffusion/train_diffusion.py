"""`dapo-fast train-diffusion`: a small Stable-Diffusion-layout text-to-image model trained on the
synthetic benchmark's images and captions, so DAPO's generation-aided training runs without a
download.

Two stages, one resumable checkpoint (``<out_dir>/checkpoint.pt``):

1. the autoencoder (AutoencoderKL): L1 reconstruction + a small KL term (SD's VAE is trained
   with a KL weight of 1e-6 too), then the latent scaling factor 1/std over the training set,
   as SD's 0.18215 was chosen;
2. the UNet2DConditionModel and the CLIP text encoder together on the cached latent
   posteriors: epsilon prediction under SD-1.x's noise schedule, captions dropped to "" with
   probability ``caption_dropout`` (for classifier-free guidance), Min-SNR-gamma loss weights
   (they speed up convergence), an exponential moving average of the weights (what is saved).

The result is written with ``save_pretrained`` as a StableDiffusionPipeline directory
(``<out_dir>/model``), which ``dapo-fast generate --model`` loads as it loads SD-1.4.

The training images are drawn from the benchmark's generator with their own seed, so they are
not the benchmark's test images (another random stream), and are resized from the benchmark's
128 px to ``data.image_size`` with antialiasing, as the grounder's input pipeline resizes them.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from dapo_fast.diffusion.models import (TextEncoderConfig, UNetConfig, VAEConfig, build_text_encoder, build_unet,
                                        build_vae, save_sd_directory, sd_noise_scheduler, vocabulary_tokenizer)

__all__ = ["DiffusionConfig", "load_diffusion_config", "train_diffusion", "export_checkpoint", "synthetic_images",
           "caption_words"]


@dataclasses.dataclass
class DataSection:
    image_size: int = 64  # side of the generated images (the grounder's input size)
    num_images: int = 16000
    min_objects: int = 1
    max_objects: int = 4  # GAT generates few-object scenes; the model learns them from few-object images
    seed: int = 1  # the benchmark's splits use seed 0: another stream, so no test image is trained on


@dataclasses.dataclass
class VAESection(VAEConfig):
    steps: int = 2000
    batch_size: int = 32
    lr: float = 0.001
    kl_weight: float = 1e-6
    colour_weight: float = 10.0  # L1 weight 1 + colour_weight * saturation per pixel (see _reconstruction_loss)


@dataclasses.dataclass
class UNetSection(UNetConfig):
    steps: int = 6000
    batch_size: int = 32
    lr: float = 0.0005
    warmup_steps: int = 200
    caption_dropout: float = 0.1
    snr_gamma: float = 5.0  # Min-SNR-gamma weights; 0 = plain MSE
    ema_decay: float = 0.999


@dataclasses.dataclass
class TrainSection:
    out_dir: str = "runs/diffusion"
    seed: int = 0
    threads: int = 2
    log_every: int = 50
    ckpt_every: int = 250
    progress: bool = True


@dataclasses.dataclass
class DiffusionConfig:
    data: DataSection = dataclasses.field(default_factory=DataSection)
    vae: VAESection = dataclasses.field(default_factory=VAESection)
    unet: UNetSection = dataclasses.field(default_factory=UNetSection)
    text_encoder: TextEncoderConfig = dataclasses.field(default_factory=TextEncoderConfig)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)


def load_diffusion_config(path: Optional[str] = None, overrides: Optional[List[str]] = None) -> DiffusionConfig:
    """The YAML file (strictly checked: unknown keys and wrong types name the dotted key) with
    "section.key=value" overrides; the defaults when ``path`` is None."""
    from dapo_fast.train.config import ConfigError, apply_overrides, dataclass_from_dict

    data: Dict = {}
    if path is not None:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise FileNotFoundError(f"config file not found: {path}") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {err}") from None
    cfg = dataclass_from_dict(DiffusionConfig, apply_overrides(data, list(overrides or [])))
    if cfg.unet.cross_attention_dim != cfg.text_encoder.hidden_size:
        raise ConfigError(f"config key 'unet.cross_attention_dim' ({cfg.unet.cross_attention_dim}) must equal "
                          f"'text_encoder.hidden_size' ({cfg.text_encoder.hidden_size})")
    down = 2 ** (len(cfg.vae.block_out_channels) - 1)
    if cfg.data.image_size % down:
        raise ConfigError(f"config key 'data.image_size' ({cfg.data.image_size}) must be a multiple of the "
                          f"autoencoder's downsampling factor {down}")
    if not 1 <= cfg.data.min_objects <= cfg.data.max_objects:
        raise ConfigError("config keys 'data.min_objects' <= 'data.max_objects' must hold, both >= 1")
    return cfg


# ---- data ---------------------------------------------------------------------------------------

def caption_words() -> List[str]:
    """Every word the synthetic benchmark's captions and DAPO's phrase sampler can use."""
    from dapo_fast.data.synthetic import COLOURS, RELATIONS, SHAPES, SIZES

    return sorted({"a", *COLOURS, *SHAPES, *SIZES, *(w for r in RELATIONS for w in r.split())})


def synthetic_images(num_images: int, image_size: int, seed: int, min_objects: int, max_objects: int,
                     chunk: int = 512) -> Tuple[torch.Tensor, List[str]]:
    """(uint8 images [N, 3, image_size, image_size], captions) from the benchmark's generator,
    resized from its 128 px with antialiasing."""
    from dapo_fast.data.synthetic import SyntheticConfig, generate_sample

    cfg = SyntheticConfig(min_objects=min_objects, max_objects=max_objects)
    rng = np.random.default_rng(seed)
    images, captions = [], []
    for start in range(0, num_images, chunk):
        records = [generate_sample(rng, cfg) for _ in range(min(chunk, num_images - start))]
        batch = torch.from_numpy(np.stack([r["image"] for r in records])).float()
        if batch.shape[-1] != image_size:
            batch = F.interpolate(batch, size=(image_size, image_size), mode="bilinear", align_corners=False,
                                  antialias=True)
        images.append(batch.round().clamp(0, 255).to(torch.uint8))
        captions += [r["caption"] for r in records]
    return torch.cat(images), captions


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 127.5 - 1.0


# ---- training -----------------------------------------------------------------------------------

def _reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, colour_weight: float) -> torch.Tensor:
    """L1 weighted per pixel by 1 + colour_weight * saturation (max - min channel of the target, in
    [0, 1]). The shapes cover a few percent of a benchmark image and the grey textured background
    the rest; with a plain L1 the autoencoder first learns the background and, measured after 250
    steps, drew every object orange. The saturated palette colours are what the prompts name."""
    saturation = (target.amax(1, keepdim=True) - target.amin(1, keepdim=True)) / 2
    return ((recon - target).abs() * (1 + colour_weight * saturation)).mean()


def _lr_factor(step: int, warmup: int) -> float:
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def _min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma weights of the epsilon loss: min(SNR, gamma) / SNR."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def _batch_indices(seed: int, step: int, n: int, batch: int) -> torch.Tensor:
    """The batch of step ``step``: a function of (seed, step) only, so a resumed run draws what
    an uninterrupted one would."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    return torch.randint(0, n, (batch,), generator=g)


def _save(path: str, state: Dict) -> None:
    from dapo_fast.train.checkpoint import save_checkpoint

    save_checkpoint(path, state)


def _load(path: str) -> Optional[Dict]:
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


_STAGE_ORDER = {"vae": 0, "unet": 1, "done": 2}


class _Log:
    """train_log.jsonl. A fresh run starts it anew; a resumed one keeps the records up to its
    checkpoint and drops those a stopped run wrote after it (they are written again)."""

    def __init__(self, path: str, checkpoint: Optional[Dict]):
        self.path = path
        if not os.path.exists(path):
            return
        if checkpoint is None:
            os.unlink(path)
            return
        until = (_STAGE_ORDER[checkpoint["stage"]], int(checkpoint["step"]))
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        with open(path, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records if (_STAGE_ORDER[r["stage"]], r["step"]) <= until)

    def write(self, record: Dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _progress(total: int, initial: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, mininterval=5.0, dynamic_ncols=True,
                file=sys.stderr, desc=desc)


def _latent_posteriors(vae, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, float]:
    """(means, stds, scaling factor) of the latent posteriors of every training image; the
    scaling factor (1/std of the means, registered in the VAE's config) makes them unit-variance."""
    with torch.no_grad():
        means, stds = [], []
        for start in range(0, len(images), 256):
            dist = vae.encode(_to_unit(images[start:start + 256])).latent_dist
            means.append(dist.mean)
            stds.append(dist.std)
        means, stds = torch.cat(means), torch.cat(stds)
    scaling = float(1.0 / means.std())
    vae.register_to_config(scaling_factor=scaling)
    return means, stds, scaling


def _write_model(model_dir: str, ema_unet, vae, ema_text, tokenizer, scheduler, info: Dict) -> None:
    """The EMA weights as a StableDiffusionPipeline directory, with how they were trained
    (``dapo_fast_training.json``)."""
    save_sd_directory(model_dir, ema_unet.eval(), vae, ema_text.eval(), tokenizer, scheduler)
    with open(os.path.join(model_dir, "dapo_fast_training.json"), "w") as f:
        json.dump(info, f, indent=1)


def export_checkpoint(cfg: DiffusionConfig, log=print) -> str:
    """Write the EMA model of the latest UNet checkpoint in ``train.out_dir`` (a run still going or
    stopped) to ``<out_dir>/model_step<N>``, labelled with its step; returns the directory. The
    same model comes out of a run of this config with ``unet.steps=N`` (the learning rate is
    constant after the warm-up, and every step's batch and noise depend on the step alone)."""
    from dapo_fast.train.config import dataclass_from_dict

    tc = cfg.train
    ckpt_path = os.path.join(tc.out_dir, "checkpoint.pt")
    state = _load(ckpt_path)
    if state is None or state["stage"] not in ("unet", "done"):
        raise ValueError(f"{ckpt_path} holds no UNet checkpoint yet (stage: {state and state['stage']})")
    config_dict = json.loads(state["config"])
    cached = _load(os.path.join(tc.out_dir, "data.pt"))
    if cached is None or cached["spec"] != json.dumps(config_dict["data"]):
        raise ValueError(f"{tc.out_dir}/data.pt is missing or was made for other data settings")
    saved = dataclass_from_dict(DiffusionConfig, config_dict)  # the checkpoint's own architecture
    dc = saved.data
    tokenizer = vocabulary_tokenizer(caption_words(), os.path.join(tc.out_dir, "tokenizer"))
    vae = build_vae(saved.vae, dc.image_size)
    unet = build_unet(saved.unet, dc.image_size // 2 ** (len(saved.vae.block_out_channels) - 1),
                      saved.vae.latent_channels)
    text_encoder = build_text_encoder(saved.text_encoder, tokenizer)
    vae.load_state_dict(state["vae"])
    unet.load_state_dict(state["ema_unet"])
    text_encoder.load_state_dict(state["ema_text_encoder"])
    vae.eval().requires_grad_(False)
    _, _, scaling = _latent_posteriors(vae, cached["images"])
    step = int(state["step"])
    model_dir = os.path.join(tc.out_dir, f"model_step{step}")
    _write_model(model_dir, unet, vae, text_encoder, tokenizer, sd_noise_scheduler(),
                 dict(config=config_dict, unet_step=step, unet_steps_planned=config_dict["unet"]["steps"],
                      seconds=state["seconds"], latent_scaling_factor=scaling))
    log(f"saved {model_dir} (EMA weights at UNet step {step} of {config_dict['unet']['steps']})")
    return model_dir


def train_diffusion(cfg: DiffusionConfig, log=print) -> Dict:
    """Train (or continue) both stages; returns {"model_dir", "seconds", "vae_seconds", "unet_seconds"}."""
    from dapo_fast.ops import momentum_update_

    t_start = time.time()
    tc = cfg.train
    if tc.threads > 0:
        torch.set_num_threads(tc.threads)
    os.makedirs(tc.out_dir, exist_ok=True)
    config_dict = dataclasses.asdict(cfg)
    ckpt_path = os.path.join(tc.out_dir, "checkpoint.pt")
    state = _load(ckpt_path)
    if state is not None:
        saved = json.loads(state["config"])
        for section in ("data", "vae", "unet", "text_encoder"):
            if saved[section] != config_dict[section]:
                raise ValueError(f"{ckpt_path} was written with a different '{section}' config; remove it or "
                                 f"use another train.out_dir (saved: {saved[section]}, now: {config_dict[section]})")
        log(f"resuming from {ckpt_path}: stage {state['stage']}, step {state['step']}")
    metrics = _Log(os.path.join(tc.out_dir, "train_log.jsonl"), state)

    dc = cfg.data
    data_path = os.path.join(tc.out_dir, "data.pt")
    cached = _load(data_path)
    if cached is None or cached["spec"] != json.dumps(config_dict["data"]):
        t0 = time.time()
        images, captions = synthetic_images(dc.num_images, dc.image_size, dc.seed, dc.min_objects, dc.max_objects)
        _save(data_path, dict(spec=json.dumps(config_dict["data"]), images=images, captions=captions))
        log(f"{len(captions)} training images ({dc.image_size} px, {dc.min_objects}-{dc.max_objects} objects) "
            f"in {time.time() - t0:.0f}s")
    else:
        images, captions = cached["images"], cached["captions"]

    tokenizer = vocabulary_tokenizer(caption_words(), os.path.join(tc.out_dir, "tokenizer"))
    torch.manual_seed(tc.seed)
    vae = build_vae(cfg.vae, dc.image_size)
    unet = build_unet(cfg.unet, dc.image_size // 2 ** (len(cfg.vae.block_out_channels) - 1),
                      cfg.vae.latent_channels)
    text_encoder = build_text_encoder(cfg.text_encoder, tokenizer)
    stage = state["stage"] if state else "vae"
    step = int(state["step"]) if state else 0
    seconds = dict(state["seconds"]) if state else dict(vae=0.0, unet=0.0)

    # ---- stage 1: the autoencoder
    vc = cfg.vae
    vae_opt = torch.optim.AdamW(vae.parameters(), lr=vc.lr, weight_decay=0.0)
    if state is not None:
        vae.load_state_dict(state["vae"])
        if stage == "vae":
            vae_opt.load_state_dict(state["vae_optimizer"])
    if stage == "vae":
        vae.train()
        bar = _progress(vc.steps, step, tc.progress, "autoencoder")
        t0 = time.time() - seconds["vae"]
        while step < vc.steps:
            x = _to_unit(images[_batch_indices(tc.seed, step, len(images), vc.batch_size)])
            posterior = vae.encode(x).latent_dist
            recon = vae.decode(posterior.sample(generator=torch.Generator().manual_seed(tc.seed + step))).sample
            rec_loss = _reconstruction_loss(recon, x, vc.colour_weight)
            kl = posterior.kl().mean() / x[0].numel()
            loss = rec_loss + vc.kl_weight * kl
            vae_opt.zero_grad(set_to_none=True)
            loss.backward()
            vae_opt.step()
            step += 1
            bar.update(1)
            if step % tc.log_every == 0 or step == vc.steps:
                seconds["vae"] = time.time() - t0
                metrics.write(dict(stage="vae", step=step, weighted_l1=rec_loss.item(), kl=kl.item(),
                                   elapsed=round(seconds["vae"], 1)))
                bar.set_postfix(l1=f"{rec_loss.item():.4f}")
            if step % tc.ckpt_every == 0 and step < vc.steps:
                seconds["vae"] = time.time() - t0
                _save(ckpt_path, dict(stage="vae", step=step, vae=vae.state_dict(),
                                      vae_optimizer=vae_opt.state_dict(), seconds=seconds,
                                      config=json.dumps(config_dict)))
        bar.close()
        seconds["vae"] = time.time() - t0
        stage, step = "unet", 0
    vae.eval().requires_grad_(False)

    means, stds, scaling = _latent_posteriors(vae, images)

    # ---- stage 2: UNet + text encoder
    uc = cfg.unet
    scheduler = sd_noise_scheduler()
    ids = tokenizer(captions, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    empty_ids = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids
    params = list(unet.parameters()) + list(text_encoder.parameters())
    opt = torch.optim.AdamW(params, lr=uc.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, uc.warmup_steps))
    ema_unet, ema_text = copy.deepcopy(unet).requires_grad_(False), copy.deepcopy(text_encoder).requires_grad_(False)
    if state is not None and state["stage"] in ("unet", "done"):
        unet.load_state_dict(state["unet"])
        text_encoder.load_state_dict(state["text_encoder"])
        ema_unet.load_state_dict(state["ema_unet"])
        ema_text.load_state_dict(state["ema_text_encoder"])
    if state is not None and state["stage"] == "unet":
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
    unet.train()
    text_encoder.train()
    bar = _progress(uc.steps, step, tc.progress, "unet+text")
    t0 = time.time() - seconds["unet"]
    while step < uc.steps:
        idx = _batch_indices(tc.seed + 1, step, len(images), uc.batch_size)
        g = torch.Generator().manual_seed(tc.seed * 7_919 + step)
        latents = (means[idx] + stds[idx] * torch.randn(means[idx].shape, generator=g)) * scaling
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (len(idx),), generator=g)
        noisy = scheduler.add_noise(latents, noise, t)
        drop = torch.rand(len(idx), generator=g) < uc.caption_dropout
        batch_ids = torch.where(drop[:, None], empty_ids, ids[idx])
        pred = unet(noisy, t, encoder_hidden_states=text_encoder(batch_ids)[0]).sample
        per_sample = (pred - noise).pow(2).flatten(1).mean(1)
        weights = _min_snr_weights(scheduler, t, uc.snr_gamma) if uc.snr_gamma > 0 else torch.ones_like(per_sample)
        loss = (weights * per_sample).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        decay = min(uc.ema_decay, (1 + step) / (10 + step))
        momentum_update_(ema_unet, unet, decay)
        momentum_update_(ema_text, text_encoder, decay)
        step += 1
        bar.update(1)
        if step % tc.log_every == 0 or step == uc.steps:
            seconds["unet"] = time.time() - t0
            metrics.write(dict(stage="unet", step=step, loss=loss.item(), mse=per_sample.mean().item(),
                               lr=sched.get_last_lr()[0], elapsed=round(seconds["unet"], 1)))
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % tc.ckpt_every == 0 and step < uc.steps:
            seconds["unet"] = time.time() - t0
            _save(ckpt_path, dict(stage="unet", step=step, vae=vae.state_dict(), unet=unet.state_dict(),
                                  text_encoder=text_encoder.state_dict(), ema_unet=ema_unet.state_dict(),
                                  ema_text_encoder=ema_text.state_dict(), optimizer=opt.state_dict(),
                                  scheduler=sched.state_dict(), seconds=seconds, config=json.dumps(config_dict)))
    bar.close()
    seconds["unet"] = time.time() - t0

    model_dir = os.path.join(tc.out_dir, "model")
    _write_model(model_dir, ema_unet, vae, ema_text, tokenizer, scheduler,
                 dict(config=config_dict, unet_step=step, seconds=seconds, threads=torch.get_num_threads(),
                      latent_scaling_factor=scaling))
    _save(ckpt_path, dict(stage="done", step=step, vae=vae.state_dict(), unet=unet.state_dict(),
                          text_encoder=text_encoder.state_dict(), ema_unet=ema_unet.state_dict(),
                          ema_text_encoder=ema_text.state_dict(), seconds=seconds, config=json.dumps(config_dict)))
    total = time.time() - t_start
    log(f"saved {model_dir} (autoencoder {seconds['vae'] / 60:.1f} min, UNet + text encoder "
        f"{seconds['unet'] / 60:.1f} min, this call {total / 60:.1f} min)")
    return dict(model_dir=model_dir, seconds=total, vae_seconds=seconds["vae"], unet_seconds=seconds["unet"])
