"""Typed configuration: dataclasses, named presets, YAML files and ``key.sub=value`` overrides.

A YAML file may name a ``preset`` to start from and then override any field; the command line overrides last.
Unknown keys and values of the wrong type are refused with one line naming the key (:class:`ConfigError`).
The per-table configs of the paper ship inside the package (``src/sht/configs/<dataset>/<name>.yaml``) and are
usable by name, e.g. ``300w/small`` (:func:`packaged_configs` lists them, ``sht configs`` prints them).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import CheckpointError, ConfigError


@dataclass
class ModelConfig:
    """The landmark/face network. ``arch``: ``dhln`` (paper §3.1) or ``jasrnet`` (Yin et al. 2020,
    ``../shared/paper/jasrnet-spec.md``). DHLN: ``streams`` switches a stream off: ``shn`` = landmarks only,
    ``fhs`` = face hallucination only, ``dhln`` = both, fused by FUBlock1/FUBlock2. JASRNet: ``jasr_channels``
    (C) and ``jasr_blocks`` (the deep residual blocks); its input is the LR face upsampled to the face size, so
    ``input_size`` is set to ``face_size`` (spec §1), and its heatmaps are ``face_size / 8`` (spec §2)."""

    arch: str = "dhln"
    streams: str = "dhln"
    num_landmarks: int = 68
    input_size: int = 64
    face_size: int = 128
    num_stacks: int = 4
    channels: int = 256
    depth: int = 4
    sr_channels: int = 64
    sr_blocks: int = 4
    fusion_kernel: int = 1
    global_residual: bool = True
    jasr_channels: int = 128
    jasr_blocks: int = 32

    def __post_init__(self) -> None:
        if self.arch not in ("dhln", "jasrnet"):
            raise ConfigError(f"model.arch must be dhln or jasrnet, got {self.arch!r}")
        if self.streams not in ("dhln", "shn", "fhs"):
            raise ConfigError(f"model.streams must be dhln, shn or fhs, got {self.streams!r}")
        if self.arch == "jasrnet":
            if self.streams != "dhln":
                raise ConfigError("model.arch=jasrnet has both heads: model.streams must be dhln")
            if self.face_size % 8 != 0 or self.jasr_channels < 1 or self.jasr_blocks < 0:
                raise ConfigError(
                    f"model.arch=jasrnet needs face_size divisible by 8 (got {self.face_size}), jasr_channels >= 1 "
                    f"and jasr_blocks >= 0"
                )
            self.input_size = self.face_size
        if self.input_size % (2**self.depth) != 0:
            raise ConfigError(f"model.input_size={self.input_size} must be divisible by 2**model.depth={2**self.depth}")

    @property
    def heatmap_size(self) -> int:
        """Side of the predicted heatmaps: the input size for DHLN, ``face_size / 8`` for JASRNet."""
        return self.face_size // 8 if self.arch == "jasrnet" else self.input_size

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
    ``synthetic:N`` for N generated faces (:mod:`sht.data.synthetic`). A bad sample is reported and skipped
    unless ``strict``, which makes it an error. ``label_noise`` > 0 moves the training faces' jaw and nose-bridge
    points along their contour by Gaussian noise of that fraction of the inter-ocular distance, drawn once from
    ``label_noise_seed`` (:mod:`sht.data.noise`; the noisy-label setting of Semantic Alignment)."""

    train: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    val_limit: int = 200
    margin: float = 1.3
    context: float = 1.5
    lr_sizes: list[int] = field(default_factory=lambda: [16])
    cache_dir: str = ".cache/sht"
    strict: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    label_noise: float = 0.0
    label_noise_seed: int = 0

    def __post_init__(self) -> None:
        if not self.lr_sizes or any(s < 2 for s in self.lr_sizes):
            raise ConfigError(f"data.lr_sizes must be a non-empty list of sizes >= 2, got {list(self.lr_sizes)}")
        if self.label_noise < 0:
            raise ConfigError(f"data.label_noise must be >= 0, got {self.label_noise}")


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
    """Optimisation, schedule, logging and checkpointing for one training run. ``init``: DHLN weights (an export
    such as the shipped ``sht-small.safetensors``, or a checkpoint) that stage 1 starts from instead of a random
    initialisation (fine-tuning; the model config must match); a resumed run takes its own checkpoint.
    ``init_skip``: module prefixes of the DHLN (e.g. ``sr_tail``) left at their random initialisation instead, for
    a model whose config differs there (a 64 px-input member started from the 32 px one: its SR tail upsamples
    x2, not x4); any other mismatch is still an error."""

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
    max_nonfinite: int = 10
    out_dir: str = "runs/train"
    tensorboard: bool = True
    progress: bool = True
    init: str = ""
    init_skip: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.init_skip and not self.init:
            raise ConfigError("train.init_skip needs train.init: the weights it leaves out of")
        if self.schedule not in ("cosine", "constant"):
            raise ConfigError(f"train.schedule must be cosine or constant, got {self.schedule!r}")
        for key in ("steps", "batch_size", "log_every", "eval_every", "checkpoint_every", "max_nonfinite"):
            if getattr(self, key) < (0 if key == "steps" else 1):
                raise ConfigError(f"train.{key} must be positive, got {getattr(self, key)}")


@dataclass
class FPTNConfig:
    """Facial Pose Transfer Network (paper §3.2, Eq. 5-8): PATB generator, the two PatchGAN discriminators
    D_A/D_S, the VGG-19 conv1_2 weights of the perceptual loss (``vgg_weights``; empty = not configured) and
    the Adam settings of generator and discriminators. ``face_size`` > 0 runs FPTN, its discriminators and the
    perceptual loss on faces resized (bilinear, antialiased) to that size (a CPU saving; 0 = the model's face
    size, as in the paper). ``warp`` > 0 (not in the paper; 0 there) adds a landmark-driven warp in front of the
    PATB network: the condition face is resampled so that its landmarks land on the target's (a least-squares
    similarity plus Gaussian-weighted landmark residuals of that radius, as a fraction of the face size;
    :func:`sht.models.fptn.landmark_warp`) and given to the encoder beside the condition face, which makes the
    output depend on every landmark's position from the first step."""

    channels: int = 64
    max_channels: int = 256
    face_size: int = 0
    warp: float = 0.0
    downsample: int = 2
    blocks: int = 6
    norm: str = "instance"
    disc_channels: int = 64
    disc_layers: int = 3
    disc_norm: str = "instance"
    spectral_norm: bool = True
    vgg_weights: str = ""
    lr: float = 2e-4
    disc_lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])

    def __post_init__(self) -> None:
        for key in ("norm", "disc_norm"):
            value = getattr(self, key)
            if value not in ("batch", "instance", "none"):
                raise ConfigError(f"fptn.{key} must be batch, instance or none, got {value!r}")
        for key, low in (
            ("channels", 1),
            ("face_size", 0),
            ("warp", 0),
            ("downsample", 0),
            ("blocks", 1),
            ("disc_channels", 1),
            ("disc_layers", 1),
        ):
            if getattr(self, key) < low:
                raise ConfigError(f"fptn.{key} must be >= {low}, got {getattr(self, key)}")
        if self.max_channels < self.channels:
            raise ConfigError(f"fptn.max_channels={self.max_channels} must be >= fptn.channels={self.channels}")
        if len(self.betas) != 2:
            raise ConfigError(f"fptn.betas must be two numbers, got {list(self.betas)}")


@dataclass
class PairsConfig:
    """Two views of one face (paper §4.1): each view's rotation (degrees) and box scale are drawn from Gaussians
    and clipped to ``+-rotation_max`` and ``[scale_min, scale_max]``; flip, colour and LR size are shared."""

    rotation_sigma: float = 15.0
    rotation_max: float = 30.0
    scale_sigma: float = 0.1
    scale_min: float = 0.8
    scale_max: float = 1.2
    translation: float = 0.03


@dataclass
class WeakConfig:
    """Unlabeled data of stage 4 (Eq. 9-10). ``images``: folders of face images (SHT-i); ``videos``: video
    files, folders of videos, or folders of frames named by clip (``clip_pattern``: a regex whose groups name
    the clip) (SHT-v). Crops: ``fixed`` uses ``box`` (centre x, centre y, side as fractions of the shorter image
    side) as the canonical box; ``detector`` refines that box with the stage's own DHLN (``detector_rounds``
    times) and, for videos, smooths it over ``track_window`` frames."""

    images: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    frames_per_video: int = 48
    clip_pattern: str = r"^(.+)_(\d)\d*$"
    crop: str = "fixed"
    box: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.75])
    detector_rounds: int = 2
    track_window: int = 5
    limit: int = 0
    unlabeled_pairs: int = 4

    def __post_init__(self) -> None:
        if self.crop not in ("fixed", "detector"):
            raise ConfigError(f"sht.weak.crop must be fixed or detector, got {self.crop!r}")
        if len(self.box) != 3 or not all(0 < v <= 2 for v in self.box):
            raise ConfigError(f"sht.weak.box must be three fractions (cx, cy, side), got {list(self.box)}")


FPTN_HEATMAPS = ("rendered", "raw")


@dataclass
class SHTConfig:
    """Supervision-by-hallucination-and-transfer (paper §3.3, Eq. 5-10).

    Paper settings (the ``paper`` presets keep them): ``lambda_gan/l1/perceptual`` = lambda_1..3 = 0.05/0.01/0.01
    weigh the adversarial, L1 and perceptual terms of L_PT (the gamma of Eq. 4/10 are ``loss.heatmap/pixel/
    gradient``); ``steps`` are the steps of the four stages of §4.1 (DHLN supervised, FPTN on true heatmaps,
    joint, weak); ``dhln_lr`` is the DHLN learning rate when fine-tuned in stages 3-4; ``perceptual_size`` > 0
    computes the VGG features of Eq. 8 on faces resized to that size (a CPU saving; 0 = the face size).

    Gradient paths (choices the paper leaves open; measured by ``benchmarks/transfer_probe.py``, see
    ``benchmarks/RESULTS.md``; the defaults below are the corrected paths, the paper presets the literal reading):

    - ``detach_condition`` (default true; paper preset false): in DHLN's update the discriminators' condition
      inputs -- D_A's condition face and D_S's target heatmaps, both DHLN outputs in stages 3-4 -- are detached,
      so the adversarial term reaches DHLN only through FPTN's generated face. Undetached, DHLN is also trained
      to make its own face and heatmaps fool D_A/D_S, a gradient with no landmark information.
    - ``real_heatmaps`` (``truth`` by default; paper preset ``predicted``): D_S's real examples
      ``H_tar || I_tar`` of labeled pairs use the ground-truth heatmaps, so D_S sees correct heatmap-face
      pairings; unlabeled pairs have no truth and use DHLN's. ``predicted`` uses DHLN's heatmaps everywhere.
    - ``fptn_heatmaps`` (``rendered`` by default; paper preset ``raw``): the one heatmap encoding of FPTN's (and
      D_S's) pose inputs in every stage. ``rendered``: Gaussians rendered by the heatmap codec from landmark
      coordinates -- the ground truth in stage 2, DHLN's coordinates decoded differentiably
      (:meth:`~sht.data.heatmaps.HeatmapCodec.local_soft_argmax`, window radius ``decode_radius`` heatmap
      pixels; 4 decodes a clean sigma-1.5 Gaussian within 0.015 px) in stages 3-4 -- so FPTN always sees the
      same kind of input and its gradient reaches DHLN as a gradient on each landmark position. ``raw``:
      ground-truth Gaussians in stage 2, DHLN's raw (unbounded) head outputs in stages 3-4.
    - lambda rebalancing: ``fptn_lambdas`` (gan, l1, perceptual) weigh L_PT in FPTN's own updates (stage 2 and
      its fine-tuning in 3-4) when they should differ from the lambda that reach DHLN (empty = the same, as in
      the paper); ``freeze_fptn`` keeps FPTN and its discriminators fixed in stages 3-4 (a fixed critic that
      cannot co-adapt with DHLN; paper: false); ``lambda_equivariance`` (not in the paper; 0 there) adds, for
      image pairs, ``||H_k - T(H_j)||^2`` and ``||H_j - T^-1(H_k)||^2`` between DHLN's final heatmaps of the two
      views and the other view's warped by the known transform ``T`` between them
      (:func:`sht.losses.equivariance_loss`): a weak loss that needs no FPTN (stages 3-4 then skip FPTN
      entirely when ``lambda_gan = lambda_l1 = lambda_perceptual = 0``, and stage 2 is not needed).
    - ``add_unlabeled`` (default true; paper preset false): stage 4's ``weak.unlabeled_pairs`` unlabeled pairs
      are added to the ``batch_size / 2`` labeled pairs instead of replacing some of them, so stages 3 and 4 see
      as many labeled faces per step as stage 1.
    """

    lambda_gan: float = 0.05
    lambda_l1: float = 0.01
    lambda_perceptual: float = 0.01
    perceptual_size: int = 0
    steps: list[int] = field(default_factory=lambda: [100_000, 20_000, 20_000, 20_000])
    dhln_lr: float = 1e-4
    detach_condition: bool = True
    real_heatmaps: str = "truth"
    fptn_heatmaps: str = "rendered"
    decode_radius: int = 4
    fptn_lambdas: list[float] = field(default_factory=list)
    freeze_fptn: bool = False
    lambda_equivariance: float = 0.0
    add_unlabeled: bool = True
    pairs: PairsConfig = field(default_factory=PairsConfig)
    weak: WeakConfig = field(default_factory=WeakConfig)

    def __post_init__(self) -> None:
        if len(self.steps) != 4 or any(v < 0 for v in self.steps):
            raise ConfigError(f"sht.steps must be four step counts (stages 1-4), got {list(self.steps)}")
        if self.real_heatmaps not in ("truth", "predicted"):
            raise ConfigError(f"sht.real_heatmaps must be truth or predicted, got {self.real_heatmaps!r}")
        if self.fptn_heatmaps not in FPTN_HEATMAPS:
            raise ConfigError(f"sht.fptn_heatmaps must be rendered or raw, got {self.fptn_heatmaps!r}")
        if self.decode_radius < 1:
            raise ConfigError(f"sht.decode_radius must be >= 1, got {self.decode_radius}")
        if self.fptn_lambdas and (len(self.fptn_lambdas) != 3 or any(v < 0 for v in self.fptn_lambdas)):
            raise ConfigError(
                f"sht.fptn_lambdas must be empty or three weights >= 0 (gan, l1, perceptual), got "
                f"{list(self.fptn_lambdas)}"
            )
        weights = (self.lambda_gan, self.lambda_l1, self.lambda_perceptual, self.lambda_equivariance)
        if any(v < 0 for v in weights):
            raise ConfigError(f"sht lambda weights must be >= 0, got {list(weights)}")

    @property
    def fptn_weights(self) -> tuple[float, float, float]:
        """(gan, l1, perceptual) weights of L_PT in FPTN's own updates."""
        if self.fptn_lambdas:
            return (self.fptn_lambdas[0], self.fptn_lambdas[1], self.fptn_lambdas[2])
        return (self.lambda_gan, self.lambda_l1, self.lambda_perceptual)

    @property
    def dhln_weights(self) -> tuple[float, float, float]:
        """(gan, l1, perceptual) weights of L_PT in DHLN's updates (lambda_1..3 of Eq. 5/9)."""
        return (self.lambda_gan, self.lambda_l1, self.lambda_perceptual)

    @property
    def uses_transfer(self) -> bool:
        """Whether the SHT objective reaches DHLN through FPTN at all."""
        return any(v > 0 for v in self.dhln_weights)


@dataclass
class SAConfig:
    """Semantic Alignment (semantic-alignment-spec §2-5, :mod:`sht.alignment`, :mod:`sht.train.semantic_alignment`).

    ``enabled``: train with the alternating search (``sht train``). The search grid is ``window x window``
    candidates one pixel of ``unit`` apart (``heatmap``, ``input`` or ``face`` = the HR face), centred on the
    annotation; ``sigma_prior`` (sigma_1) is in those units, ``sigma_likelihood`` (sigma_2) scales the chi2 between
    the ``patch x patch`` patch (heatmap pixels) of the last stack's heatmap and the ideal Gaussian of
    ``heatmap.sigma``. Schedule: plain training for ``start`` x ``train.steps`` steps (the warm-up), then a search
    over all training faces every ``every`` x ``train.steps`` steps, each supervising the steps up to the next;
    faces are searched at LR size ``lr_size`` (0: the largest of ``data.lr_sizes``).

    Defaults measured by ``python benchmarks/sa_defaults.py --steps 1000``
    (``benchmarks/results/sa_defaults.json``): DHLN small trained on Helen train + YTF68 with label noise 0.06, its
    heatmaps searched around annotations with noise 0 / 0.03 / 0.06 on 200 of its training faces and on a held-out
    slice of Helen train, scored against the clean labels (NME_io %, mean of the three noise levels; the annotations
    themselves score 0.738). No setting beats leaving the annotations alone: the model's own error (6.7 % at 64 px
    after 1000 steps, 9.7 % on the noisy jaw/nose points) is larger than the noise (weak points: 2.4 % / 4.8 % mean
    displacement). The defaults are the best setting that still moves points, at steps 250, 750 and 1000 (tied at
    500) and on both face sets: LR size 64 (0 = the largest of small's sizes) over 16, a face-pixel grid over
    heatmap pixels, patch 3 over 5 and 7, and sigma_1 : sigma_2 = 2 : 1 (only the ratio matters to the argmin):
    0.831 on the training faces and 0.842 on the held-out slice at step 1000 (weak points at noise 0.06: 4.77 vs
    4.78 unsearched). ``start`` = 0.5: by half the steps the model's training-face NME is within 1.4 points of its
    final value (8.1 vs 6.7 %), the "roughly converged" model of the paper's Fig. 1, while the search's score did
    not depend on the checkpoint (0.80-0.85 from step 250 on); ``every`` = 0.25: one more search at 3/4 with the
    better model, two passes over the training set in all."""

    enabled: bool = False
    window: int = 17
    unit: str = "face"
    sigma_prior: float = 2.0
    sigma_likelihood: float = 1.0
    patch: int = 3
    start: float = 0.5
    every: float = 0.25
    lr_size: int = 0
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.unit not in ("heatmap", "input", "face"):
            raise ConfigError(f"sa.unit must be heatmap, input or face, got {self.unit!r}")
        for key in ("window", "patch"):
            v = getattr(self, key)
            if v < 1 or v % 2 == 0:
                raise ConfigError(f"sa.{key} must be odd and positive, got {v}")
        if self.sigma_prior <= 0 or self.sigma_likelihood <= 0:
            raise ConfigError("sa.sigma_prior and sa.sigma_likelihood must be positive")
        if not (0 <= self.start < 1 and 0 < self.every <= 1):
            raise ConfigError(f"sa.start must be in [0, 1) and sa.every in (0, 1], got {self.start}, {self.every}")


@dataclass
class GHCUConfig:
    """Global Heatmap Correction Unit (semantic-alignment-spec §7, :mod:`sht.models.ghcu`): trained for ``steps``
    steps at Adam ``lr`` after the backbone, which stays frozen; the final heatmaps are resized to ``input_size``
    before its six stride-2 convolutions (32: DHLN small's own heatmap size; the spec's Table 1 implies 256, whose
    first convolution alone costs 64x more)."""

    steps: int = 300
    lr: float = 1e-3
    input_size: int = 32

    def __post_init__(self) -> None:
        if self.input_size < 1 or self.steps < 0 or self.lr <= 0:
            raise ConfigError("ghcu.input_size must be >= 1, ghcu.steps >= 0 and ghcu.lr > 0")


@dataclass
class Config:
    """Everything one run needs; ``preset`` records which named preset it started from."""

    preset: str = "paper"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    heatmap: HeatmapConfig = field(default_factory=HeatmapConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    fptn: FPTNConfig = field(default_factory=FPTNConfig)
    sht: SHTConfig = field(default_factory=SHTConfig)
    sa: SAConfig = field(default_factory=SAConfig)
    ghcu: GHCUConfig = field(default_factory=GHCUConfig)


# The paper's literal SHT objective: DHLN's update sees the discriminators' conditions, D_S's real pairs use
# DHLN's heatmaps, FPTN reads DHLN's raw heatmaps, unlabeled pairs take the place of labeled ones in a batch.
PAPER_SHT: dict[str, Any] = {
    "detach_condition": False,
    "real_heatmaps": "predicted",
    "fptn_heatmaps": "raw",
    "add_unlabeled": False,
}

PRESETS: dict[str, dict[str, Any]] = {
    # The paper's DHLN/SHT setting (§4.1-4.2): 16x16 LR resized to 64x64, 4 stacks x 256 channels, 64x64
    # heatmaps, SR stream of 4 modules x 4 SRBlocks x 64 channels, 128x128 face. A GPU preset.
    # The gradient paths of stages 3-4 are the literal reading of Eq. 5-9 (see SHTConfig).
    "paper": {"sht": PAPER_SHT},
    # SHT-M (§4.3): 64x64 LR input hallucinated to 256x256.
    "paper-m": {"model": {"face_size": 256}, "data": {"lr_sizes": [64]}, "sht": PAPER_SHT},
    # CPU preset: 32x32 input and heatmaps, 2 stacks x 64 channels, 2 modules x 2 SRBlocks x 32 channels, face
    # still hallucinated at 128x128; LR sizes 16/32/64 with 16 px drawn twice as often; a foreground-weighted
    # heatmap MSE (Adaptive Wing's weight map, w = 10) to start fast, and gamma_2 = gamma_3 = 1 so that the
    # face stream is trained as hard as the (now ~10x larger) heatmap term; see benchmarks/RESULTS.md.
    # JASRNet (model.arch=jasrnet; paper preset: the spec's C = 128, 32 blocks): C = 12 and 8 deep blocks cost about
    # a DHLN-small step. CPU seconds per step of batch 16, 1 thread, two interleaved runs each:
    # DHLN small 0.784 / 0.943, JASRNet C=12 x 8 blocks 0.863 / 0.997 (C=16 x 2: 1.176, C=14 x 8: 1.145), from
    # `python benchmarks/step_time.py --preset small [--override model.arch=jasrnet]`.
    "small": {
        "model": {
            "input_size": 32,
            "num_stacks": 2,
            "channels": 64,
            "depth": 3,
            "sr_channels": 32,
            "sr_blocks": 2,
            "jasr_channels": 12,
            "jasr_blocks": 8,
        },
        "data": {"lr_sizes": [16, 16, 32, 64]},
        "heatmap": {"sigma": 1.5},
        "loss": {"foreground_weight": 10.0, "pixel": 1.0, "gradient": 1.0},
        "train": {"steps": 3000, "lr": 2e-3, "warmup_steps": 100, "eval_every": 500, "checkpoint_every": 250},
        # FPTN on 64 px faces, 32-64 channels, with the landmark warp, trained on reconstruction (lambda 0.01/1/1),
        # then fixed in stages 3-4; DHLN gets the L1 and perceptual transfer terms only (the adversarial term's
        # position gradient has a negative cosine with the truth), weighted so that their gradient on the landmark
        # positions is ~0.4x the supervised loss's: chosen with benchmarks/transfer_probe.py (RESULTS.md).
        "fptn": {
            "face_size": 64,
            "channels": 32,
            "max_channels": 64,
            "warp": 0.06,
            "blocks": 3,
            "disc_channels": 16,
            "disc_layers": 2,
        },
        "sht": {
            "steps": [2400, 300, 300, 300],
            "dhln_lr": 2e-4,
            "perceptual_size": 64,
            "lambda_gan": 0.0,
            "lambda_l1": 0.05,
            "lambda_perceptual": 0.05,
            "fptn_lambdas": [0.01, 1.0, 1.0],
            "freeze_fptn": True,
        },
    },
}


# --------------------------------------------------------------------------------------------------------------
# The face detector (sht.models.face_detector, sht.data.composites, sht.train.face_detector)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FaceDetectorConfig:
    """The anchor-free face detector: a plain-convolution backbone with ``channels`` at strides 2, 4, ... (one
    stage each, ``blocks`` residual blocks), a light top-down merge to ``stride`` (``neck`` channels) and three
    heads: a face-centre heatmap, the box size ``log(w / size_ref), log(h / size_ref)`` and the centre's sub-cell
    offset. The box is the 68-point landmark box. A photo is searched at scales 1, 1/2, 1/4, ...; each finds faces
    whose larger side is ``min_face`` to ``max_face`` of its pixels (the sizes it sees most in training: a 160-px
    training image holds few large faces whole), so a 200-px face is found at 1/4. ``threshold`` and ``nms_iou``
    are the default decoding settings; ``calibrate_fp`` > 0: when a training run is exported, ``threshold`` becomes
    the lowest score at which its validation composites (held-out identities, never a benchmark's faces) have at
    most that many false positives per 640x480 of image area (:func:`sht.train.face_detector.calibrate_threshold`).
    ``upsample`` > 1, ``upsample_threshold``, ``upsample_below``: the enlarged level for the smallest faces, its
    score threshold and the largest face it keeps
    (:class:`sht.models.face_detector.DetectSettings`), written with the weights (benchmarks/detector_val.py)."""

    channels: list[int] = field(default_factory=lambda: [16, 32, 48, 64, 96])
    blocks: list[int] = field(default_factory=lambda: [0, 1, 1, 2, 1])
    neck: int = 32
    stride: int = 4
    size_ref: float = 16.0
    min_face: float = 10.0
    max_face: float = 64.0
    threshold: float = 0.4
    nms_iou: float = 0.4
    calibrate_fp: float = 0.05
    upsample: float = 1.0
    upsample_threshold: float = 0.0
    upsample_below: float = 20.0

    def __post_init__(self) -> None:
        if self.upsample < 1 or not 0 <= self.upsample_threshold < 1:
            raise ConfigError("model.upsample must be >= 1 and model.upsample_threshold in [0, 1)")
        if self.calibrate_fp < 0:
            raise ConfigError(f"model.calibrate_fp must be >= 0, got {self.calibrate_fp}")
        if len(self.channels) != len(self.blocks) or not self.channels or min(self.channels) < 1:
            raise ConfigError("model.channels and model.blocks must be non-empty lists of the same length")
        if min(self.blocks) < 0 or self.neck < 1:
            raise ConfigError("model.blocks must be >= 0 and model.neck >= 1")
        if self.stride not in (2, 4, 8) or self.stride > 2 ** len(self.channels):
            raise ConfigError(f"model.stride must be 2, 4 or 8 and reached by the backbone, got {self.stride}")
        if not 0 < self.min_face < self.max_face or self.size_ref <= 0:
            raise ConfigError("model.min_face must be in (0, model.max_face) and model.size_ref > 0")
        if not 0 < self.threshold < 1 or not 0 < self.nms_iou <= 1:
            raise ConfigError("model.threshold must be in (0, 1) and model.nms_iou in (0, 1]")

    @property
    def max_stride(self) -> int:
        """The coarsest backbone stride (inputs are padded to a multiple of it)."""
        return 2 ** len(self.channels)


@dataclass
class CompositeConfig:
    """Training images for the face detector (:mod:`sht.data.composites`): labeled faces (``train``: folders with
    ``.pts``, ``synthetic:N[:seed]`` or ``NAME:ROOT:SPLIT`` sources) held as canonical crops of ``face_size`` px with
    ``context`` x more surround, pasted with a feathered mask onto ``image_size`` px backgrounds at a landmark-box
    larger side of ``min_face``-``max_face`` px (log-uniform; ``crowd`` of the images hold ``crowd_faces`` small
    faces up to ``crowd_max`` px), ``empty`` of the images none. ``backgrounds``: ``builtin`` (the non-face sample
    images of scikit-image and matplotlib, the non-face half of scikit-image's LFW subset, procedural textures;
    never the benchmark's photos) and/or folders of face-free images. ``negatives``: up to that many hard negatives
    per image (scrambled face crops, off-face patches of the face photos). Degradations per face: ``lowres`` of
    them go bicubic down by up to ``lowres_max`` x and back up, Gaussian blur up to ``blur`` px; per image: noise
    up to ``noise`` (of 1), ``grey`` of them grey, ``jpeg`` of them JPEG at quality ``jpeg_quality``.
    ``val_fraction`` of the faces (whole identities, fixed ``val_seed``) are held out for ``val_images`` validation
    composites. ``thumbnails``: the share of training images that are one face cut tightly (a small photo such as
    a 25 px LFW face, on the plain frame that detection adds to small photos). ``mine_images`` > 0 (with an
    ``init`` detector): before training, that detector runs on that many training composites and on every
    background photo; what it reports at ``mine_threshold`` or more away from any face becomes one more kind of
    hard negative (:func:`sht.train.face_detector.mine_hard_negatives`)."""

    train: list[str] = field(default_factory=lambda: ["synthetic:400"])
    backgrounds: list[str] = field(default_factory=lambda: ["builtin"])
    face_size: int = 96
    context: float = 1.4
    image_size: int = 160
    min_face: float = 10.0
    max_face: float = 120.0
    max_faces: int = 4
    crowd: float = 0.3
    crowd_faces: list[int] = field(default_factory=lambda: [4, 12])
    crowd_max: float = 32.0
    empty: float = 0.08
    negatives: int = 2
    rotation: float = 15.0
    flip: float = 0.5
    colour: float = 0.25
    lowres: float = 0.4
    lowres_max: float = 3.0
    blur: float = 1.2
    noise: float = 0.03
    grey: float = 0.1
    jpeg: float = 0.5
    jpeg_quality: list[int] = field(default_factory=lambda: [30, 90])
    val_fraction: float = 0.08
    val_seed: int = 20240612
    val_images: int = 200
    thumbnails: float = 0.0
    mine_images: int = 0
    mine_threshold: float = 0.3
    cache_dir: str = ".cache/sht"

    def __post_init__(self) -> None:
        if not 0 < self.min_face < self.max_face:
            raise ConfigError(f"data.min_face must be in (0, data.max_face), got {self.min_face}, {self.max_face}")
        if self.image_size < 32 or self.face_size < 16 or self.context < 1:
            raise ConfigError("data.image_size must be >= 32, data.face_size >= 16 and data.context >= 1")
        for key in ("crowd", "empty", "flip", "lowres", "grey", "jpeg", "val_fraction", "thumbnails"):
            if not 0 <= getattr(self, key) <= 1:
                raise ConfigError(f"data.{key} must be a probability in [0, 1], got {getattr(self, key)}")
        if len(self.crowd_faces) != 2 or not 1 <= self.crowd_faces[0] <= self.crowd_faces[1]:
            raise ConfigError(f"data.crowd_faces must be [min, max] counts, got {list(self.crowd_faces)}")
        if len(self.jpeg_quality) != 2 or not 1 <= self.jpeg_quality[0] <= self.jpeg_quality[1] <= 100:
            raise ConfigError(f"data.jpeg_quality must be [low, high] in 1..100, got {list(self.jpeg_quality)}")
        if self.max_faces < 1 or self.negatives < 0 or self.lowres_max < 1 or self.val_images < 0:
            raise ConfigError("data.max_faces >= 1, data.negatives >= 0, data.lowres_max >= 1, data.val_images >= 0")
        if self.mine_images < 0 or not 0 < self.mine_threshold < 1:
            raise ConfigError(
                f"data.mine_images must be >= 0 and data.mine_threshold in (0, 1), got {self.mine_images}, "
                f"{self.mine_threshold}"
            )


@dataclass
class DetectorLossConfig:
    """CenterNet's penalty-reduced focal loss on the centre heatmap (``alpha``, ``beta``) and L1 on the log box
    size and the centre offset at each face's centre cell, weighted ``size`` and ``offset``."""

    alpha: float = 2.0
    beta: float = 4.0
    size: float = 1.0
    offset: float = 1.0


@dataclass
class DetectorConfig:
    """One face-detector training run (``sht train-detector``); ``kind: detector`` marks its YAML files.
    ``init``: a face-detector weights file (a run's export, the shipped ``face-detector.safetensors``) or
    checkpoint whose detector starts a new run (fine-tuning; its model must match ``model``); a run that resumes
    takes its own checkpoint instead. Empty: random initialisation."""

    preset: str = "small"
    kind: str = "detector"
    init: str = ""
    model: FaceDetectorConfig = field(default_factory=FaceDetectorConfig)
    data: CompositeConfig = field(default_factory=CompositeConfig)
    loss: DetectorLossConfig = field(default_factory=DetectorLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.kind != "detector":
            raise ConfigError(f"kind must be detector in a face-detector config, got {self.kind!r}")
        if self.data.mine_images and not self.init:
            raise ConfigError("data.mine_images needs init: the detector whose mistakes are mined")
        if self.train.init:
            raise ConfigError("a face-detector config starts from weights with init:, not train.init")


DETECTOR_PRESETS: dict[str, dict[str, Any]] = {
    # CPU preset, ~45 min on one core: batch 16 of 160 px composites, a 0.52 M-parameter detector (1.0 MB fp16).
    # Measured with detector/small on this 2-core machine while both cores ran another benchmark (load 4.5-5.3,
    # so wall time was 2.6-4.0 s/step): 463-642 ms of CPU time per step, of which 210-305 ms build the composites;
    # 4800 steps x ~0.55 s = ~44 min, plus loading (~20 s from the crop cache, ~60 s the first time) and 8
    # validations of 200 composites (~10 s each).
    "small": {
        "train": {
            "steps": 4800,
            "batch_size": 16,
            "lr": 2e-3,
            "warmup_steps": 100,
            "weight_decay": 1e-4,
            "grad_clip": 10.0,
            "log_every": 25,
            "eval_every": 600,
            "checkpoint_every": 200,
            "out_dir": "runs/face-detector",
        },
    },
}


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
    return _build(Config, PRESETS, "paper", layers)


def build_detector_config(*layers: dict[str, Any]) -> DetectorConfig:
    """:func:`build_config` for the face detector's runs (:class:`DetectorConfig`, :data:`DETECTOR_PRESETS`)."""
    return _build(DetectorConfig, DETECTOR_PRESETS, "small", layers)


def _build(schema: type, presets: dict[str, dict[str, Any]], default: str, layers: tuple[dict[str, Any], ...]) -> Any:
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _deep_merge(merged, layer)
    preset = merged.get("preset", default)
    if not isinstance(preset, str) or preset not in presets:
        raise ConfigError(f"preset: unknown preset {preset!r}; choose one of {', '.join(presets)}")
    full = _deep_merge(copy.deepcopy(presets[preset]), merged)
    full["preset"] = preset
    try:
        conf = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(full))
        obj = OmegaConf.to_object(conf)
    except OmegaConfBaseException as exc:
        raise ConfigError(_short(exc)) from None
    assert isinstance(obj, schema)
    return obj


def _configs_root() -> Any:
    from importlib.resources import files

    return files("sht") / "configs"


def packaged_configs() -> dict[str, str]:
    """The configs shipped in the package: ``{name: first comment line}``, names like ``300w/small``."""
    root = _configs_root()
    out: dict[str, str] = {}
    for folder in sorted((d for d in root.iterdir() if d.is_dir()), key=lambda d: d.name):
        for f in sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name):
            first = next((ln for ln in f.read_text(encoding="utf-8").splitlines() if ln.startswith("#")), "#")
            out[f"{folder.name}/{f.name[: -len('.yaml')]}"] = first.lstrip("# ").strip()
    return out


def packaged_config_path(name: str) -> Path | None:
    """The file of packaged config ``name`` (``300w/small`` or ``300w/small.yaml``), or None."""
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    parts = stem.split("/")
    if len(parts) != 2 or not all(parts):
        return None
    f = _configs_root() / parts[0] / f"{parts[1]}.yaml"
    return Path(str(f)) if f.is_file() else None


def _source_layers(source: str | Path | None, overrides: list[str] | None, presets: dict[str, Any]) -> list[dict]:
    """The layers of a YAML path, preset name or packaged config name, then ``key.sub=value`` overrides."""
    layers: list[dict[str, Any]] = []
    if source is not None:
        s = str(source)
        if Path(s).is_file():
            layers.append(read_yaml(s))
        elif s in presets:
            layers.append({"preset": s})
        elif (packaged := packaged_config_path(s)) is not None:
            layers.append(read_yaml(packaged))
        else:
            raise ConfigError(
                f"config file not found: {s}; nor is it a preset ({', '.join(presets)}) or a packaged config "
                f"(sht configs lists them, e.g. {next(iter(packaged_configs()), '300w/small')})"
            )
    for item in overrides or []:
        layers.append(_parse_override(item))
    return layers


def load_config(source: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a config from a YAML path, a preset name (``small``, ``paper``, ``paper-m``) or a packaged config
    name (``300w/small``), then apply ``key.sub=value`` overrides."""
    layers = _source_layers(source, overrides, PRESETS)
    if layers and layers[0].get("kind") == "detector":
        raise ConfigError(f"{source} is a face-detector config: train it with sht train-detector {source} --out DIR")
    return build_config(*layers)


def load_detector_config(source: str | Path | None = None, overrides: list[str] | None = None) -> DetectorConfig:
    """:func:`load_config` for a face-detector run (``sht train-detector``; e.g. ``detector/small``)."""
    return build_detector_config(*_source_layers(source, overrides, DETECTOR_PRESETS))


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """``cfg`` with ``key.sub=value`` overrides applied (validated like :func:`load_config`'s)."""
    return build_config(config_to_dict(cfg), *(_parse_override(o) for o in overrides))


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view of a config dataclass (for JSON/YAML)."""
    return asdict(cfg)


def model_config_diff(saved: dict[str, Any] | None, cfg: Any) -> list[str]:
    """The ``model`` fields in which ``cfg`` differs from a saved run's model config (``saved``, a dict). A field the
    run does not record (it predates the field) is taken at its default, so new fields do not block a resume."""
    if saved is None:
        return []
    own = config_to_dict(cfg)["model"]
    default = config_to_dict(type(cfg.model)())
    return sorted(k for k in set(own) | set(saved) if saved.get(k, default.get(k)) != own.get(k))


def check_model_config(where: Any, saved: dict[str, Any] | None, cfg: Any) -> None:
    """Refuse to resume ``where`` (a run or checkpoint) with a model config other than the one it was trained with
    (:func:`model_config_diff`): one :class:`~sht.errors.CheckpointError` line naming the fields."""
    diff = model_config_diff(saved, cfg)
    if diff:
        raise CheckpointError(
            f"{where}: was trained with a different model config ({', '.join(f'model.{k}' for k in diff)}); "
            "use a new out_dir"
        )


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` saved with :func:`config_to_dict` (validated against the schema)."""
    return build_config(data)


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
