"""Typed configuration: dataclasses, named presets, YAML files and ``key.sub=value`` overrides.

A YAML file may name a ``preset`` to start from and then override any field; the command line overrides last.
Unknown keys and values of the wrong type are refused with one line naming the key (:class:`ConfigError`).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


@dataclass
class ModelConfig:
    """DHLN architecture (paper §3.1). ``streams`` switches a stream off: ``shn`` = landmarks only,
    ``fhs`` = face hallucination only, ``dhln`` = both, fused by FUBlock1/FUBlock2."""

    streams: str = "dhln"
    num_landmarks: int = 68
    input_size: int = 64
    face_size: int = 128
    num_stacks: int = 4
    channels: int = 256
    depth: int = 4
    sr_channels: int = 64
    sr_blocks: int = 4
    fusion_kernel: int = 3
    global_residual: bool = True

    def __post_init__(self) -> None:
        if self.streams not in ("dhln", "shn", "fhs"):
            raise ConfigError(f"model.streams must be dhln, shn or fhs, got {self.streams!r}")
        if self.input_size % (2**self.depth) != 0:
            raise ConfigError(f"model.input_size={self.input_size} must be divisible by 2**model.depth={2**self.depth}")

    @property
    def has_landmarks(self) -> bool:
        return self.streams in ("dhln", "shn")

    @property
    def has_face(self) -> bool:
        return self.streams in ("dhln", "fhs")


@dataclass
class AugmentConfig:
    """Geometric and photometric augmentation applied to whole batches (landmarks kept consistent)."""

    rotation: float = 20.0
    scale: list[float] = field(default_factory=lambda: [0.9, 1.1])
    translation: float = 0.04
    flip: float = 0.5
    colour: float = 0.2


@dataclass
class DataConfig:
    """Training/validation data. Sources are folders of images with ``.pts`` beside them, or
    ``synthetic:N`` for N generated faces (:mod:`sht.data.synthetic`)."""

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    val_limit: int = 200
    margin: float = 1.3
    context: float = 1.5
    lr_sizes: list[int] = field(default_factory=lambda: [16])
    cache_dir: str = ".cache/sht"
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class HeatmapConfig:
    """Gaussian heatmap codec: ``sigma`` in heatmap pixels; decoder ``argmax`` (quarter offset) or ``subpixel``."""

    sigma: float = 1.5
    decoder: str = "subpixel"


@dataclass
class LossConfig:
    """Weights of Eq. 4 (gamma_1..3) and two optional terms that speed up the start of training on CPU:
    a foreground weight on the heatmap MSE (as in Adaptive Wing) and a soft-argmax coordinate L1."""

    heatmap: float = 1.0
    pixel: float = 0.01
    gradient: float = 0.01
    foreground_weight: float = 0.0
    coordinate: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and checkpointing for one training run."""

    steps: int = 100_000
    batch_size: int = 16
    lr: float = 2.5e-4
    min_lr_ratio: float = 0.01
    warmup_steps: int = 500
    schedule: str = "cosine"
    weight_decay: float = 0.0
    grad_clip: float = 0.0
    seed: int = 0
    amp: bool = True
    device: str = "auto"
    threads: int = 0
    log_every: int = 50
    eval_every: int = 2000
    checkpoint_every: int = 1000
    out_dir: str = "runs/train"
    tensorboard: bool = True
    progress: bool = True


@dataclass
class Config:
    """Everything one run needs; ``preset`` records which named preset it started from."""

    preset: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper's DHLN/SHT setting (§4.1-4.2): 16x16 LR resized to 64x64, 4 stacks x 256 channels, 64x64
    # heatmaps, SR stream of 4 modules x 4 SRBlocks x 64 channels, 128x128 face. A GPU preset.
    "paper": {},
    # SHT-M (§4.3): 64x64 LR input hallucinated to 256x256.
    "paper-m": {"model": {"face_size": 256}, "data": {"lr_sizes": [64]}},
    # CPU preset: 32x32 input and heatmaps, 2 stacks x 64 channels, 2 modules x 2 SRBlocks x 32 channels, face
    # still hallucinated at 128x128; foreground-weighted MSE and a soft-argmax term to start fast.
    "small": {
        "model": {
            "input_size": 32,
            "num_stacks": 2,
            "channels": 64,
            "depth": 3,
            "sr_channels": 32,
            "sr_blocks": 2,
            "fusion_kernel": 1,
        },
        "data": {"lr_sizes": [16, 32, 64]},
        "heatmap": {"sigma": 1.0},
        "loss": {"foreground_weight": 10.0, "coordinate": 0.05},
        "train": {"steps": 3000, "lr": 1e-3, "warmup_steps": 100, "eval_every": 500, "checkpoint_every": 250},
    },
}


def _schema() -> Any:
    return OmegaConf.structured(Config)


def _short(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None)
    msg = str(err).splitlines()[0]
    return f"{key}: {msg}" if key else msg


def _parse_override(item: str) -> dict[str, Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not of the form key.sub=value")
    key, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc.__class__.__name__})") from None
    node: dict[str, Any] = {}
    cur = node
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return node


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, refusing anything else with a one-line :class:`ConfigError`."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: not valid YAML ({exc.__class__.__name__})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(data).__name__}")
    return data


def build_config(*layers: dict[str, Any]) -> Config:
    """Merge plain nested dicts (later wins) onto the schema; a ``preset`` key in the first layer that names
    one is applied before it. Returns validated dataclasses."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    preset = merged.get("preset", "paper")
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    full = _deep_merge(copy.deepcopy(PRESETS[preset]), merged)
    full["preset"] = preset
    try:
        conf = OmegaConf.merge(_schema(), OmegaConf.create(full))
        obj = OmegaConf.to_object(conf)
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, Config)
    return obj


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a config from a YAML path or a preset name, then apply ``key.sub=value`` overrides."""
    layers: list[dict[str, Any]] = []
    if source is not None:
        s = str(source)
        if s in PRESETS and not Path(s).is_file():
            layers.append({"preset": s})
        else:
            layers.append(read_yaml(s))
    for item in overrides or []:
        layers.append(_parse_override(item))
    return build_config(*layers)


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for JSON/YAML)."""
    return asdict(cfg)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` saved with :func:`config_to_dict` (validated against the schema)."""
    return build_config(data)


def model_config_from_dict(data: dict[str, Any]) -> ModelConfig:
    """Rebuild a :class:`ModelConfig` (validated) from a plain dict."""
    try:
        conf = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.create(data))
        obj = OmegaConf.to_object(conf)
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, ModelConfig)
    return obj


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _deep_merge(base: dict[str, Any], upd: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in upd.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out
