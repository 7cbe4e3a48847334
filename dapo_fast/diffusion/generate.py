"""`dapo-fast generate`: DAPO's generated training set (generation-aided training, eq. 3-5).

For every prompt (a caption and its entity phrases), a Stable-Diffusion-layout model loaded from
a local ``save_pretrained`` directory denoises from the prompt's own seed with classifier-free
guidance; with ``--grounder`` the first half of the steps make DAPO's attention-driven latent
update (eq. 4: z_t <- z_t - alpha_t grad L_A, Attend-and-Excite's step sizes) against that
grounder's heatmaps on the decoded latents. The cross-attention maps of the final denoising step,
per entity (Attend-and-Excite's post-processing), are kept as the targets of DAPO's
diffusion-guided loss (eq. 5).

Output (``--out DIR``)::

    manifest.json                 settings, prompt source, shard size (a resumed run must match)
    shard_00000/index.jsonl       one line per image: caption, entities, char and token spans,
                                  seed, guidance settings, guidance loss
    shard_00000/0000000.png ...   the images
    shard_00000/maps.safetensors  "0000000" -> float32 [E, h, w] final-step entity maps
    shard_00000/sheets/*.png      with --save-maps: the image, each entity's and each token's map

A shard is written to a hidden temporary directory and renamed when complete, so a stopped run
leaves only whole shards; a rerun skips them. Under ``torchrun`` rank r takes the shards
k with k % world_size == r. Every image depends only on its prompt and seed (per-sample random
generators for the initial latents and the DDPM noise), not on the batch it was generated in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from dapo_fast.data.generated import FORMAT, image_key, shard_name
from dapo_fast.diffusion.attention_maps import AttentionMapStore, register, unregister
from dapo_fast.diffusion.guidance import AttendExciteSchedule, attention_guided_step, decode_latents
from dapo_fast.diffusion.models import SD_COMPONENTS, encode_text
from dapo_fast.diffusion.token_maps import entity_attention_maps, entity_token_spans, eot_index
from dapo_fast.safe_io import jsonl_error, jsonl_objects

__all__ = ["GenerationError", "Prompt", "sample_prompts", "read_prompts", "load_sd_directory", "SDComponents",
           "GrounderHeatmaps", "GenerationSettings", "PreparedPrompt", "prepare_prompts", "denoise",
           "generate", "overlay_map", "save_map_sheet", "main"]


class GenerationError(ValueError):
    """Bad input to generation: a model directory, a prompt, a phrases file, a resume mismatch."""


# ---- prompts ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Prompt:
    caption: str
    entities: Tuple[str, ...]


def sample_prompts(num_two: int = 7000, num_three: int = 3000, seed: int = 0, sizes: bool = False) -> List[Prompt]:
    """DAPO's resampled phrases over the synthetic benchmark's vocabulary: ``num_two`` captions of
    two entities and ``num_three`` of three (DAPO: 7000 + 3000), in the benchmark's caption
    grammar ("a red circle left of a blue square and a green ring"); each caption names distinct
    (colour, shape) kinds; ``sizes`` prefixes each entity with a size word ("large red circle").
    The list is shuffled (so every shard mixes both kinds) and is a function of the arguments."""
    from dapo_fast.data.synthetic import COLOURS, RELATIONS, SHAPES, SIZES

    if num_two < 0 or num_three < 0:
        raise GenerationError(f"num_two and num_three must be >= 0, got {num_two} and {num_three}")
    rng = np.random.default_rng(seed)
    colours, shapes = list(COLOURS), list(SHAPES)
    kinds = [(c, s) for c in colours for s in shapes]
    prompts = []
    for count in [2] * num_two + [3] * num_three:
        chosen = [kinds[i] for i in rng.choice(len(kinds), size=count, replace=False)]
        entities = []
        for colour, shape in chosen:
            size = f"{SIZES[rng.integers(len(SIZES))]} " if sizes else ""
            entities.append(f"{size}{colour} {shape}")
        caption = f"a {entities[0]}"
        for entity in entities[1:]:
            caption += f" {RELATIONS[rng.integers(len(RELATIONS))]} a {entity}"
        prompts.append(Prompt(caption, tuple(entities)))
    order = rng.permutation(len(prompts))
    return [prompts[i] for i in order]


def entity_char_spans(caption: str, entities: Sequence[str]) -> List[Tuple[int, int]]:
    """(start, end) of each entity in ``caption`` as whole words; repeated entities take successive
    occurrences. Raises GenerationError naming an entity that does not occur."""
    spans, taken = [], []
    for entity in entities:
        start = 0
        while True:
            found = caption.find(entity, start)
            if found < 0:
                raise GenerationError(f"entity {entity!r} does not occur in the caption {caption!r}")
            end = found + len(entity)
            whole = (found == 0 or not caption[found - 1].isalnum()) and (end == len(caption)
                                                                            or not caption[end].isalnum())
            if whole and not any(found < e and s < end for s, e in taken):
                break
            start = found + 1
        taken.append((found, end))
        spans.append((found, end))
    return spans


def read_prompts(path: str) -> List[Prompt]:
    """A JSONL file, one ``{"caption": str, "entities": [str, ...]}`` per line (blank lines
    skipped). A bad line raises GenerationError naming the file and the line number."""
    what = "phrases file"
    prompts = []
    for number, record in jsonl_objects(path, what, GenerationError):
        caption, entities = record.get("caption"), record.get("entities")
        if not isinstance(caption, str) or not caption.strip():
            raise jsonl_error(GenerationError, what, path, number, "'caption' must be a non-empty string")
        if (not isinstance(entities, list) or not entities
                or not all(isinstance(e, str) and e.strip() for e in entities)):
            raise jsonl_error(GenerationError, what, path, number,
                              "'entities' must be a non-empty list of non-empty strings")
        try:
            entity_char_spans(caption, entities)
        except GenerationError as err:
            raise jsonl_error(GenerationError, what, path, number, str(err)) from None
        prompts.append(Prompt(caption, tuple(entities)))
    if not prompts:
        raise GenerationError(f"{what} {path} holds no prompt")
    return prompts


@dataclasses.dataclass(frozen=True)
class PreparedPrompt:
    index: int
    prompt: Prompt
    seed: int
    char_spans: Tuple[Tuple[int, int], ...]
    token_spans: Tuple[Tuple[int, ...], ...]
    eot: int


def prepare_prompts(prompts: Sequence[Prompt], tokenizer, seed: int) -> List[PreparedPrompt]:
    """Token spans and EOT position of every prompt under the model's tokenizer (checked before
    anything is generated); prompt i gets the seed ``seed + i``."""
    out = []
    for i, p in enumerate(prompts):
        where = f"prompt {i} ({p.caption!r})"
        try:
            chars = entity_char_spans(p.caption, p.entities)
            tokens = entity_token_spans(tokenizer, p.caption, p.entities)
        except (GenerationError, ValueError) as err:
            raise GenerationError(f"{where}: {err}") from None
        eot = eot_index(tokenizer, p.caption)
        if max(max(span) for span in tokens) >= eot or eot >= tokenizer.model_max_length - 1:
            raise GenerationError(f"{where} is longer than the text encoder's {tokenizer.model_max_length} tokens")
        out.append(PreparedPrompt(i, p, seed + i, tuple(map(tuple, chars)), tuple(map(tuple, tokens)), eot))
    return out


# ---- models -------------------------------------------------------------------------------------

@dataclasses.dataclass
class SDComponents:
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: Dict
    device: torch.device
    dtype: torch.dtype


def load_sd_directory(path: str, device=None, dtype: Optional[torch.dtype] = None) -> SDComponents:
    """UNet2DConditionModel, AutoencoderKL, CLIPTextModel, CLIPTokenizer and the scheduler config
    from a diffusers Stable Diffusion directory. Default: float32 on the CPU, float16 on CUDA.
    A missing component raises GenerationError naming it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if not os.path.isdir(path):
        raise FileNotFoundError(f"model directory not found: {path}")
    for name, marker in SD_COMPONENTS.items():
        if not os.path.exists(os.path.join(path, name, marker)):
            raise GenerationError(f"model directory {path} has no '{name}' component ({name}/{marker} is missing); "
                                  "expected a diffusers Stable Diffusion layout saved with save_pretrained")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = dtype or (torch.float16 if device.type == "cuda" else torch.float32)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", torch_dtype=dtype, low_cpu_mem_usage=False)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype, low_cpu_mem_usage=False)
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", torch_dtype=dtype)
    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
    with open(os.path.join(path, "scheduler", SD_COMPONENTS["scheduler"])) as f:
        scheduler_config = json.load(f)
    for module in (unet, vae, text_encoder):
        module.to(device).eval().requires_grad_(False)
    return SDComponents(unet, vae, text_encoder, tokenizer, scheduler_config, device, dtype)


def make_scheduler(kind: str, config: Dict):
    """DDPM (DAPO's) or DDIM from the model's scheduler config."""
    from diffusers import DDIMScheduler, DDPMScheduler

    if kind == "ddpm":
        return DDPMScheduler.from_config(config)
    if kind == "ddim":
        return DDIMScheduler.from_config(config)
    raise GenerationError(f"scheduler must be 'ddpm' or 'ddim', got {kind!r}")


class GrounderHeatmaps:
    """A grounder as the heatmap function of eq. 3: images in [-1, 1] and each image's entity
    phrases -> heatmaps [B, E, h, w], through the grounder's own preprocessing (resize to its
    input size, normalise) and phrase encoding. :meth:`load` reads a training checkpoint."""

    def __init__(self, model: torch.nn.Module, encode: Callable, image_size: int, device=None, name: str = ""):
        self.model, self.encode, self.image_size = model, encode, image_size
        self.device = torch.device(device or "cpu")
        self.model.to(self.device).eval()
        self.name = name

    @classmethod
    def load(cls, path: str, device=None) -> "GrounderHeatmaps":
        from dapo_fast.train.loop import load_trained

        method, cfg, _ = load_trained(path)
        return cls(method.model, method.encode_phrase, cfg.data.image_size, device, name=path)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, entities: Sequence[Sequence[str]]) -> torch.Tensor:
        from dapo_fast.data.sample import encode_phrases, prepare_images

        pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).cpu()
        x = prepare_images(list(pixels), self.image_size).to(self.device)
        width = max(len(e) for e in entities)
        tokens, valid = encode_phrases([{"phrases": list(e)} for e in entities], self.encode, width)
        return self.model(x, tokens.to(self.device), valid.to(self.device))["heatmaps"]


# ---- denoising ----------------------------------------------------------------------------------

@dataclasses.dataclass
class GenerationSettings:
    steps: int = 50  # DAPO: DDPM, 50 steps
    cfg_scale: float = 7.5
    scheduler: str = "ddpm"
    guidance: bool = False  # eq. 4 with a grounder
    scale_factor: float = 20.0  # Attend-and-Excite's alpha_t = scale_factor * sqrt(linspace(1, 0.5, steps)[i])
    max_iter_to_alter: Optional[int] = None  # guided steps; None: the first half (A&E: 25 of 50)
    refine_thresholds: Dict[int, float] = dataclasses.field(default_factory=dict)  # {step: L_A threshold}
    max_refinement_steps: int = 20
    map_resolution: int = 16

    def schedule(self) -> AttendExciteSchedule:
        alter = self.steps // 2 if self.max_iter_to_alter is None else self.max_iter_to_alter
        return AttendExciteSchedule(num_inference_steps=self.steps, scale_factor=self.scale_factor,
                                    max_iter_to_alter=alter, thresholds=dict(self.refine_thresholds),
                                    max_refinement_steps=self.max_refinement_steps)

    def check(self) -> None:
        if self.steps < 1:
            raise GenerationError(f"steps must be >= 1, got {self.steps}")
        if self.cfg_scale < 1:
            raise GenerationError(f"cfg_scale must be >= 1 (1 = no classifier-free guidance), got {self.cfg_scale}")
        if self.scheduler not in ("ddpm", "ddim"):
            raise GenerationError(f"scheduler must be 'ddpm' or 'ddim', got {self.scheduler!r}")

    def to_dict(self) -> Dict:
        out = dataclasses.asdict(self)
        out["max_iter_to_alter"] = self.schedule().max_iter_to_alter
        out["refine_thresholds"] = {str(k): v for k, v in sorted(self.refine_thresholds.items())}
        return out


@dataclasses.dataclass
class Denoised:
    images: torch.Tensor  # uint8 [B, 3, H, W]
    entity_maps: torch.Tensor  # float32 [B, E, h, w] final-step maps (zero-padded)
    entity_valid: torch.Tensor  # bool [B, E]
    attention: torch.Tensor  # float32 [B, HW, T] final-step aggregated cross-attention (for per-token maps)
    guidance_loss: List[List[float]]  # per sample: L_A at each guided step


def denoise(sd: SDComponents, batch: Sequence[PreparedPrompt], settings: GenerationSettings,
            grounder: Optional[Callable] = None) -> Denoised:
    """Generate one batch. ``grounder(images, entities) -> heatmaps`` enables eq. 4."""
    if settings.guidance and grounder is None:
        raise GenerationError("guidance needs a grounder")
    unet, device, dtype = sd.unet, sd.device, sd.dtype
    scheduler = make_scheduler(settings.scheduler, sd.scheduler_config)
    scheduler.set_timesteps(settings.steps, device=device)
    captions = [p.prompt.caption for p in batch]
    spans = [[list(s) for s in p.token_spans] for p in batch]
    eots = [p.eot for p in batch]
    with torch.no_grad():
        cond = encode_text(sd.text_encoder, sd.tokenizer, captions)
        uncond = encode_text(sd.text_encoder, sd.tokenizer, [""] * len(batch))
    generators = [torch.Generator().manual_seed(p.seed) for p in batch]
    shape = (1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    latents = torch.cat([torch.randn(shape, generator=g) for g in generators]).to(device, dtype)
    latents = latents * scheduler.init_noise_sigma
    schedule = settings.schedule()
    entities = [p.prompt.entities for p in batch]
    guide = (lambda images: grounder(images, entities)) if settings.guidance else None
    losses: List[List[float]] = [[] for _ in batch]
    store = AttentionMapStore((settings.map_resolution,), classifier_free_guidance=True)
    register(unet, store)
    try:
        for i, t in enumerate(scheduler.timesteps):
            if guide is not None and schedule.applies(i):
                step = attention_guided_step(
                    unet, latents, t, cond, guide, sd.vae, spans, step_index=i, schedule=schedule,
                    refine=schedule.threshold(i) is not None, store=store, resolution=settings.map_resolution,
                    last_index=eots)
                latents = step.latents
                for b, value in enumerate(step.loss.float().tolist()):
                    losses[b].append(value)
            with torch.no_grad():
                model_input = scheduler.scale_model_input(torch.cat([latents, latents]), t)
                noise = unet(model_input, t, encoder_hidden_states=torch.cat([uncond, cond])).sample
                noise_uncond, noise_cond = noise.chunk(2)
                noise = noise_uncond + settings.cfg_scale * (noise_cond - noise_uncond)
                extra = {"generator": generators} if settings.scheduler == "ddpm" else {}
                latents = scheduler.step(noise, t, latents, **extra).prev_sample
        with torch.no_grad():
            attention = store.maps(settings.map_resolution).float()
            maps, valid = entity_attention_maps(attention, spans, eots)
            images = decode_latents(sd.vae, latents)
    finally:
        unregister(unet)
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()
    return Denoised(pixels, maps.cpu(), valid.cpu(), attention.cpu(), losses)


# ---- output -------------------------------------------------------------------------------------

def _prompts_digest(prompts: Sequence[Prompt]) -> str:
    h = hashlib.sha256()
    for p in prompts:
        h.update(json.dumps([p.caption, list(p.entities)]).encode())
    return h.hexdigest()


def _check_manifest(out_dir: str, manifest: Dict) -> None:
    """Write the manifest, or check that an existing one describes the same run."""
    path = os.path.join(out_dir, "manifest.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = json.load(f)
        for key in ("format", "settings", "num_prompts", "shard_size", "prompts_sha256", "seed", "grounder"):
            if saved.get(key) != manifest[key]:
                raise GenerationError(f"{out_dir} holds a generation run with a different '{key}' "
                                      f"(saved: {saved.get(key)!r}, now: {manifest[key]!r}); use another --out")
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(tmp, path)


def overlay_map(ax, image: torch.Tensor, heat: torch.Tensor) -> None:
    """Draw uint8 ``image`` [3, H, W] on matplotlib axes ``ax`` with the map ``heat`` [h, w]
    upsampled (bilinear) to it and overlaid in the jet colour map over its own range."""
    import torch.nn.functional as F

    up = F.interpolate(heat[None, None].float(), size=tuple(image.shape[-2:]), mode="bilinear",
                       align_corners=False)[0, 0]
    ax.imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.imshow(up.numpy(), cmap="jet", alpha=0.5, vmin=float(up.min()), vmax=max(float(up.max()), float(up.min()) + 1e-6))


def save_map_sheet(path: str, image: torch.Tensor, title: str, panels: Sequence[Tuple[str, torch.Tensor]],
                   columns: int = 6) -> None:
    """One PNG: the image, then each map (entity or token) upsampled and overlaid on it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = 1 + len(panels)
    cols = min(columns, count)
    rows = (count + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.75 * rows + 0.3), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    axes.flat[0].imshow(image.permute(1, 2, 0).numpy(), interpolation="nearest")
    axes.flat[0].set_title("image", fontsize=7)
    for ax, (name, heat) in zip(axes.flat[1:], panels):
        overlay_map(ax, image, heat)
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _token_panels(tokenizer, item: PreparedPrompt, attention: torch.Tensor) -> List[Tuple[str, torch.Tensor]]:
    """Each prompt token's map (the Attend-and-Excite post-processing, one token per span)."""
    ids = tokenizer(item.prompt.caption, add_special_tokens=False)["input_ids"]
    names = [tokenizer.convert_ids_to_tokens(i).replace("</w>", "") for i in ids]
    spans = [[[t] for t in range(1, item.eot)]]
    maps, _ = entity_attention_maps(attention[None], spans, [item.eot])
    return [(f"'{names[t - 1]}'", maps[0, t - 1]) for t in range(1, item.eot)]


def _write_shard(out_dir: str, k: int, items: Sequence[PreparedPrompt], results: Sequence[Tuple[Denoised, int]],
                 settings: Dict, tokenizer, save_maps: bool) -> None:
    from safetensors.torch import save_file
    from torchvision.io import write_png

    final = os.path.join(out_dir, shard_name(k))
    tmp = os.path.join(out_dir, f".{shard_name(k)}.partial")
    os.makedirs(tmp, exist_ok=True)
    if save_maps:
        os.makedirs(os.path.join(tmp, "sheets"), exist_ok=True)
    lines, tensors = [], {}
    for item, (den, b) in zip(items, results):
        key = image_key(item.index)
        write_png(den.images[b], os.path.join(tmp, f"{key}.png"))
        count = len(item.prompt.entities)
        tensors[key] = den.entity_maps[b, :count].contiguous()
        lines.append(dict(index=item.index, image=f"{shard_name(k)}/{key}.png", caption=item.prompt.caption,
                          entities=list(item.prompt.entities), entity_spans=[list(s) for s in item.char_spans],
                          token_spans=[list(s) for s in item.token_spans], eot_index=item.eot, seed=item.seed,
                          guidance=settings, guidance_loss=den.guidance_loss[b]))
        if save_maps:
            panels = [(f"{e}", den.entity_maps[b, j]) for j, e in enumerate(item.prompt.entities)]
            panels += _token_panels(tokenizer, item, den.attention[b])
            save_map_sheet(os.path.join(tmp, "sheets", f"{key}.png"), den.images[b], item.prompt.caption, panels)
    save_file(tensors, os.path.join(tmp, "maps.safetensors"))
    with open(os.path.join(tmp, "index.jsonl"), "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    os.replace(tmp, final)


def _rank_and_world() -> Tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def generate(model_dir: str, out_dir: str, prompts: Sequence[Prompt], settings: GenerationSettings, *,
             grounder_path: Optional[str] = None, seed: int = 0, batch_size: int = 8, shard_size: int = 256,
             save_maps: bool = False, device=None, dtype: Optional[torch.dtype] = None, progress: bool = True,
             prompt_source: str = "", log=print) -> Dict:
    """Generate every unfinished shard of this rank; returns {"generated", "skipped_shards", "seconds", ...}."""
    settings.check()
    if settings.guidance != (grounder_path is not None):
        raise GenerationError("attention guidance needs a grounder checkpoint, and a grounder is only used with it")
    if batch_size < 1 or shard_size < 1:
        raise GenerationError(f"batch_size and shard_size must be >= 1, got {batch_size} and {shard_size}")
    rank, world = _rank_and_world()
    if device is None and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    sd = load_sd_directory(model_dir, device, dtype)
    prepared = prepare_prompts(prompts, sd.tokenizer, seed)
    grounder = GrounderHeatmaps.load(grounder_path, sd.device) if grounder_path else None
    settings_dict = dict(settings.to_dict(), grounder=os.path.abspath(grounder_path) if grounder_path else None)
    os.makedirs(out_dir, exist_ok=True)
    _check_manifest(out_dir, dict(format=FORMAT, model=os.path.abspath(model_dir), settings=settings_dict,
                                  num_prompts=len(prompts), shard_size=shard_size, seed=seed,
                                  prompts_sha256=_prompts_digest(prompts), prompt_source=prompt_source,
                                  grounder=settings_dict["grounder"]))
    shards = [k for k in range((len(prepared) + shard_size - 1) // shard_size) if k % world == rank]
    todo = [k for k in shards if not os.path.exists(os.path.join(out_dir, shard_name(k), "index.jsonl"))]
    for k in todo:  # a partial shard of a stopped run is redone from scratch
        shutil.rmtree(os.path.join(out_dir, f".{shard_name(k)}.partial"), ignore_errors=True)
    total = sum(len(prepared[k * shard_size:(k + 1) * shard_size]) for k in todo)
    from tqdm import tqdm

    bar = tqdm(total=total, disable=not progress, desc=f"generate (rank {rank})" if world > 1 else "generate",
               position=rank, dynamic_ncols=True, file=sys.stderr, mininterval=2.0, unit="img")
    t0 = time.time()
    for k in todo:
        items = prepared[k * shard_size:(k + 1) * shard_size]
        results = []
        for start in range(0, len(items), batch_size):
            den = denoise(sd, items[start:start + batch_size], settings, grounder)
            results += [(den, b) for b in range(den.images.shape[0])]
            bar.update(den.images.shape[0])
        _write_shard(out_dir, k, items, results, settings_dict, sd.tokenizer, save_maps)
    bar.close()
    seconds = time.time() - t0
    if total:
        log(f"generated {total} images in {seconds:.1f}s ({total / seconds:.2f} images/s) into {out_dir}; "
            f"{len(shards) - len(todo)} finished shards skipped")
    else:
        log(f"nothing to do: all {len(shards)} shards of rank {rank} in {out_dir} are finished")
    return dict(generated=total, shards=len(todo), skipped_shards=len(shards) - len(todo), seconds=seconds,
                rank=rank, world_size=world)


# ---- command line -------------------------------------------------------------------------------

def run(args) -> Dict:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.phrases:
        prompts, source = read_prompts(args.phrases), os.path.abspath(args.phrases)
    else:
        prompts = sample_prompts(args.num_two, args.num_three, args.phrase_seed, args.sizes)
        source = f"sampler(num_two={args.num_two}, num_three={args.num_three}, seed={args.phrase_seed}, sizes={args.sizes})"
    if args.limit is not None:
        prompts = prompts[:args.limit]
        source += f"[:{args.limit}]"
    settings = GenerationSettings(steps=args.steps, cfg_scale=args.cfg_scale, scheduler=args.scheduler,
                                  guidance=args.grounder is not None, scale_factor=args.scale_factor,
                                  max_iter_to_alter=args.max_iter_to_alter, refine_thresholds=args.refine_thresholds,
                                  map_resolution=args.map_resolution)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    return generate(args.model, args.out, prompts, settings, grounder_path=args.grounder, seed=args.seed,
                    batch_size=args.batch_size, shard_size=args.shard_size, save_maps=args.save_maps,
                    device=args.device, dtype=dtype, progress=not args.no_progress, prompt_source=source)


def main(argv=None) -> int:
    """``python -m dapo_fast.diffusion.generate ARGS`` = ``dapo-fast generate ARGS``."""
    from dapo_fast.cli import main as cli_main

    return cli_main(["generate"] + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
