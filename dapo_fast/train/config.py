"""Training configuration: nested dataclasses, loaded from YAML with strict checking.

Every key is checked before anything trains: an unknown key, a value of the wrong type or out of
range (a learning rate that is not > 0, a zero logging interval, an empty curriculum, any float that
is NaN or infinite) raises ``ConfigError`` naming the dotted key (``train.batch_size``) and what was
expected. The file and ``--set`` values are parsed with ``yaml.safe_load`` (no tags that build
objects); a value that is not valid YAML is a ``ConfigError`` naming the file or the override.

The top-level ``method`` names the training method (a plug-in of the one loop, see
``dapo_fast.train.methods``); the method's own options live in the section named after it
(``wwbl:``, ``mpl:``, ...) and are checked against that method's options dataclass. A method may
change the defaults of the shared sections (e.g. no curriculum): its ``DEFAULTS`` are applied
before the file's values, so a config file only has to say what differs.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Dict, List, Optional

import yaml

from dapo_fast.data.synthetic import PRESETS
from dapo_fast.models.heatmap_grounder import ModelConfig


class ConfigError(ValueError):
    pass


def evaluation_option(default: Any) -> Any:
    """A method option that only changes how a trained model is scored (a threshold of the
    evaluation protocol): a run continues with another value, and ``dapo-fast eval --set`` may
    change it for a finished checkpoint."""
    return dataclasses.field(default=default, metadata={"evaluation_only": True})


def evaluation_keys(options) -> List[str]:
    """The names of ``options``' (a method's Options dataclass or instance) evaluation-only fields."""
    return [f.name for f in dataclasses.fields(options) if f.metadata.get("evaluation_only")]


@dataclasses.dataclass
class DataConfig:
    kind: str = "synthetic"  # "synthetic" | "flickr30k" | "refcoco"
    root: str = "runs/synthetic_data"  # synthetic: where the generated splits are cached; real: dataset root
    preset: str = "default"  # synthetic: "default" | "hard" (dapo_fast.data.synthetic.PRESETS), cached apart
    image_size: int = 64  # model input side (images are resized to it)
    num_train: int = 8000
    num_val: int = 400
    num_test: int = 1000
    seed: int = 0  # the benchmark's seed (fixes the splits)
    max_entities: int = 3
    dataset: str = "refcoco"  # refcoco: refcoco | refcoco+ | refcocog
    split_by: str = "unc"  # refcoco: refs(<split_by>).p
    image_dir: str = "images"  # real datasets: image folder inside root
    generated_root: Optional[str] = None  # a `dapo-fast generate` output mixed into training (DAPO GAT)
    generated_fraction: Optional[float] = None  # share of generated samples per batch; None: as the pool holds them


@dataclasses.dataclass
class OptimConfig:
    name: str = "adamw"  # "adamw" | "sgd" (DAPO: sgd, lr 0.012, momentum 0.9, wd 1e-4)
    lr: float = 0.002
    momentum: float = 0.9
    weight_decay: float = 0.0001
    warmup_steps: int = 0
    schedule: str = "constant"  # "constant" | "cosine" (measured: cosine decay cost 30+ points of PG in the demo)


@dataclasses.dataclass
class CurriculumConfig:
    score_q: bool = True  # baby steps over object-count subsets (ScoreQ)
    score_s: bool = True  # semantic scores + self-paced weights (ScoreS)
    subsets: List[List[int]] = dataclasses.field(
        default_factory=lambda: [[1, 2], [3, 3], [4, 4], [5, 5], [6, 8]])  # inclusive object-count ranges
    stage_epochs: float = 1.0  # epochs over the current pool before the next subset is merged
    warmup_steps: int = 100  # ScoreS without open_clip: train this long, then score with a frozen copy
    scorer: str = "auto"  # "auto" (open_clip if scorer_pretrained else own) | "own" | "open_clip"
    scorer_model: str = "ViT-B-16"
    scorer_pretrained: Optional[str] = None
    gamma_start: float = 0.5
    gamma_end: float = 0.1
    gamma_schedule: str = "linear"  # "linear" (start -> end over the run) | "constant"


@dataclasses.dataclass
class TrainConfig:
    out_dir: str = "runs/demo"
    seed: int = 0
    batch_size: int = 64  # global batch (split over DDP ranks)
    max_steps: int = 1500
    compile: bool = True  # the heatmap grounder (wwbl): compiled steps 1.27x faster; methods set their own (DEFAULTS)
    log_every: int = 25
    ckpt_every: int = 500
    stop_after: int = 0  # >0: stop (as if interrupted) after this many steps; for testing --resume
    progress: bool = True
    threads: int = 0  # torch.set_num_threads when > 0
    init_from: Optional[str] = None  # start from this checkpoint's weights and tokenizer (fine-tuning)


SHARED_SECTIONS = ("data", "model", "optim", "curriculum", "train")


@dataclasses.dataclass
class Config:
    """A whole run. Build it with ``config_from_dict`` / ``load_config`` (they fill ``options``)."""
    method: str = "wwbl"
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    curriculum: CurriculumConfig = dataclasses.field(default_factory=CurriculumConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    options: Any = None  # the method's options dataclass; YAML section named after the method


CHOICES = {
    "data.kind": ("synthetic", "flickr30k", "refcoco"),
    "data.preset": tuple(PRESETS),
    "model.backbone": ("small", "open_clip"),
    "optim.name": ("adamw", "sgd"),
    "optim.schedule": ("cosine", "constant"),
    "curriculum.scorer": ("auto", "own", "open_clip"),
    "curriculum.gamma_schedule": ("linear", "constant"),
}


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _check_value(key: str, value: Any, tp) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _check_value(key, value, inner)
    if origin in (list, List):
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list, got {type(value).__name__} ({value!r})")
        return [_check_value(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be a bool, got {type(value).__name__} ({value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an int, got {type(value).__name__} ({value!r})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a float, got {type(value).__name__} ({value!r})")
        try:
            value = float(value)
        except OverflowError:  # an int too large for a float
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(f"config key '{key}' must be a finite number, got {value}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {type(value).__name__} ({value!r})")
        return value
    raise ConfigError(f"config key '{key}': unsupported type {_type_name(tp)}")


def dataclass_from_dict(cls, data: Dict, prefix: str = "", skip=()):
    """An instance of the (nested) dataclass ``cls`` from a YAML mapping, every key and value type
    checked; errors name the dotted key under ``prefix``. Any config of the package loads this way."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix or '<root>'}' must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in skip}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key '{dotted}' (known keys here: {', '.join(sorted(fields))})")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = dataclass_from_dict(tp, value, dotted)
        else:
            v = _check_value(dotted, value, tp)
            choices = fields[key].metadata.get("choices") or CHOICES.get(dotted)
            if choices and v not in choices:
                raise ConfigError(f"config key '{dotted}' must be one of {tuple(choices)}, got {v!r}")
            kwargs[key] = v
    return cls(**kwargs)


def _merge(base: Dict, top: Dict) -> Dict:
    """``top`` over ``base``, section by section (values of ``top`` win)."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_from_dict(data: Optional[Dict]) -> Config:
    from dapo_fast.train import methods

    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
    data = dict(data or {})
    if not isinstance(data.get("method", "wwbl"), str):
        raise ConfigError(f"config key 'method' must be a string, got {data['method']!r}")
    name = data.pop("method", "wwbl")
    if name not in methods.NAMES:
        raise ConfigError(f"config key 'method' must be one of {methods.NAMES}, got {name!r}")
    method = methods.get(name)
    for other in methods.NAMES:
        if other != name and other in data:
            raise ConfigError(f"config section '{other}' holds the options of method '{other}', "
                              f"but this config's method is '{name}'")
    data = _merge(method.DEFAULTS, data)
    options = data.pop(name, {})
    if "loss" in data:
        raise ConfigError(f"unknown config key 'loss': the loss options of method '{name}' "
                          f"are in the section '{name}:'")
    cfg = dataclass_from_dict(Config, data, "", skip=("method", "options"))
    cfg.method = name
    cfg.options = dataclass_from_dict(method.Options, options, name)
    validate(cfg)
    method.validate_config(cfg)
    return cfg


def validate(cfg: Config) -> None:
    """Value checks that types alone do not catch (floats are already finite)."""
    d, m, o, c, t = cfg.data, cfg.model, cfg.optim, cfg.curriculum, cfg.train
    at_least = {1: (("train.batch_size", t.batch_size), ("train.max_steps", t.max_steps),
                    ("train.log_every", t.log_every), ("data.image_size", d.image_size),
                    ("data.max_entities", d.max_entities), ("data.num_train", d.num_train),
                    ("data.num_val", d.num_val), ("data.num_test", d.num_test), ("model.dim", m.dim),
                    ("model.cnn_width", m.cnn_width), ("model.cnn_depth", m.cnn_depth),
                    ("model.text_width", m.text_width), ("model.decoder_width", m.decoder_width),
                    ("model.phrase_len", m.phrase_len)),
                0: (("train.ckpt_every", t.ckpt_every), ("train.stop_after", t.stop_after),
                    ("train.threads", t.threads), ("train.seed", t.seed), ("data.seed", d.seed),
                    ("optim.warmup_steps", o.warmup_steps), ("optim.momentum", o.momentum),
                    ("optim.weight_decay", o.weight_decay), ("curriculum.warmup_steps", c.warmup_steps))}
    for low, pairs in at_least.items():
        for key, value in pairs:
            if value < low:
                raise ConfigError(f"config key '{key}' must be >= {low}, got {value}")
    for key, value in (("optim.lr", o.lr), ("curriculum.stage_epochs", c.stage_epochs)):
        if not value > 0:
            raise ConfigError(f"config key '{key}' must be > 0, got {value}")
    if t.seed >= 2**63:
        raise ConfigError(f"config key 'train.seed' must be < 2**63, got {t.seed}")
    if not c.subsets:
        raise ConfigError("config key 'curriculum.subsets' must hold at least one [lo, hi] object-count range")
    for i, rng in enumerate(c.subsets):
        if len(rng) != 2 or rng[0] > rng[1] or rng[0] < 0:
            raise ConfigError(f"config key 'curriculum.subsets[{i}]' must be [lo, hi] with 0 <= lo <= hi, got {rng}")
    fraction = cfg.data.generated_fraction
    if fraction is not None and not 0.0 <= fraction <= 1.0:
        raise ConfigError(f"config key 'data.generated_fraction' must be in [0, 1] (or null), got {fraction}")
    if fraction is not None and not cfg.data.generated_root:
        raise ConfigError("config key 'data.generated_fraction' needs 'data.generated_root' (the generated images)")
    if cfg.data.image_size % 4:
        raise ConfigError(f"config key 'data.image_size' must be a multiple of 4, got {cfg.data.image_size}")


def load_config(path: str, overrides: Optional[List[str]] = None) -> Config:
    """Read a YAML file; ``overrides`` are "section.key=value" strings (value parsed as YAML)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = _parse_yaml(f.read(), f"config file {path}")
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(data).__name__}")
    return config_from_dict(apply_overrides(data, overrides or []))


def _parse_yaml(text: str, what: str) -> Any:
    """``yaml.safe_load`` (no tags that build objects), a ConfigError naming ``what`` when it fails."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} is not valid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(f"{what} is nested too deeply") from None


def apply_overrides(data: Dict, overrides: List[str]) -> Dict:
    """Apply "section.key=value" strings (value parsed as YAML) to a config dict."""
    for item in overrides:
        dotted, eq, raw = item.partition("=")
        parts = dotted.split(".")
        if not eq or not all(parts):
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{p}' is not a section")
        node[parts[-1]] = _parse_yaml(raw, f"override {item!r}: the value")
    return data


def config_to_dict(cfg: Config) -> Dict:
    """Plain dict that ``config_from_dict`` turns back into the same Config."""
    out = {"method": cfg.method}
    out.update({section: dataclasses.asdict(getattr(cfg, section)) for section in SHARED_SECTIONS})
    out[cfg.method] = dataclasses.asdict(cfg.options)
    return out
