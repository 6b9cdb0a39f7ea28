"""Semantic Alignment training (semantic-alignment-spec §5) and the GHCU stage after it (§7).

:class:`SemanticAlignmentStage` is :class:`~sht.train.stages.SupervisedStage` (DHLN, SHN or JASRNet) whose
training targets are the searched ground truth: after a warm-up of plain training on the annotations, it
alternates a search step (weights fixed, :func:`sht.alignment.semantic_search` over every training face, each grid
centred on the original annotation as the constraint is written) with training steps on the searched points.
The heatmap loss stays the model's own (Eq. 4 MSE for DHLN/SHN, CPM for JASRNet) on Gaussians centred on the
searched points; whether the paper adds an L2 loss to its chi2 training objective is NOT FOUND in the spec.

The searched points live in the checkpoint as module ``sa`` (buffers ``points``, in the training face set's crop
pixels, and ``rounds``), so a resumed run continues with exactly the same targets and searches.

:class:`GHCUStage` then trains a GHCU on the frozen backbone's final heatmaps of augmented training faces, with
the searched points (the annotations without SA) as targets; its checkpoint holds ``dhln``, ``ghcu`` (and ``sa``),
which :class:`~sht.infer.Predictor` loads as one corrected model.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn

from ..alignment import semantic_search
from ..checkpoint import load_checkpoint, read_checkpoint
from ..config import Config
from ..data.dataset import BatchBuilder, EpochSampler, FaceSet, step_generator
from ..data.heatmaps import HeatmapCodec
from ..losses import LossParts, ghcu_loss
from ..models.factory import build_model
from ..models.ghcu import GHCU, CorrectedModel
from .stages import SupervisedStage, backward_and_step, dhln_metrics
from .trainer import Trainer, resolve_device, seed_everything


class SearchedTruth(nn.Module):
    """The latent ground truth of every training face: ``points`` ``(N, K, 2)`` in crop pixels and the number of
    search ``rounds`` done (buffers, so they are saved and restored with the checkpoint)."""

    def __init__(self, points: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("points", points.detach().clone().float())
        self.register_buffer("rounds", torch.zeros((), dtype=torch.long))


def search_steps(cfg: Config) -> list[int]:
    """The steps before which a search runs: ``start`` x steps, then every ``every`` x steps (at least 1)."""
    n = cfg.train.steps
    first, every = int(round(cfg.sa.start * n)), max(int(round(cfg.sa.every * n)), 1)
    return list(range(first, n, every))


def grid_step(cfg: Config) -> float:
    """Spacing of the search grid in heatmap pixels: one pixel of ``sa.unit``."""
    m = cfg.model
    return m.heatmap_size / {"heatmap": m.heatmap_size, "input": m.input_size, "face": m.face_size}[cfg.sa.unit]


@torch.no_grad()
def search_faces(
    model: nn.Module, faces: FaceSet, cfg: Config, codec: HeatmapCodec, device: torch.device
) -> torch.Tensor:
    """One search step over all of ``faces`` (canonical crops, no augmentation): the searched points in crop
    pixels ``(N, K, 2)``; hidden landmarks keep their annotation."""
    sa, m = cfg.sa, cfg.model
    lr_size = sa.lr_size or max(cfg.data.lr_sizes)
    builder = BatchBuilder(faces, m.input_size, codec, [lr_size])
    step = grid_step(cfg)
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(faces), sa.batch_size):
        idx = torch.arange(i, min(i + sa.batch_size, len(faces)))
        batch = builder.build(idx, lr_size=lr_size).to(device)
        hm = model(batch.input, batch.base).final_heatmaps.float()
        assert batch.points is not None
        anchors = batch.points * codec.scale
        found = semantic_search(
            hm, anchors, sa.window, step, sa.sigma_prior * step, sa.sigma_likelihood, sa.patch, codec.sigma
        )
        out.append(found.cpu() / codec.scale)
    model.train(was_training)
    pts = torch.cat(out).double() + (faces.crop_size - faces.size) / 2
    assert faces.points is not None
    if faces.visible is not None:
        pts = torch.where(faces.visible[..., None], pts, faces.points.double())
    return pts.float()


class SemanticAlignmentStage(SupervisedStage):
    """Supervised training on the searched ground truth, searched on the schedule of :func:`search_steps`."""

    name = "sa"

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        train_faces: FaceSet | None = None,
        val_faces: FaceSet | None = None,
    ) -> None:
        super().__init__(cfg, device, rank, world_size, train_faces, val_faces)
        if not cfg.model.has_landmarks:
            raise ValueError("Semantic Alignment searches landmark heatmaps: model.streams must be dhln or shn")
        assert self.train_faces.points is not None
        self.truth = SearchedTruth(self.train_faces.points)
        self.schedule = search_steps(cfg)
        # the batch builder reads the searched points; the caller's face set is left as it was
        self.builder.faces = dataclasses.replace(self.train_faces, points=self.truth.points)

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"dhln": self.model, "sa": self.truth}

    def search(self) -> None:
        """Search step (spec §5.1) with the current weights, anchored on the annotations."""
        self.truth.points.copy_(search_faces(self.model, self.train_faces, self.cfg, self.codec, self.device))
        self.truth.rounds += 1

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        due = sum(1 for s in self.schedule if s <= step)
        searched = int(self.truth.rounds) < due
        while int(self.truth.rounds) < due:
            self.search()
        self.builder.faces.points = self.truth.points  # the same tensor after a resume's in-place load
        parts = super().train_step(step)
        if searched:
            moved = (self.truth.points - self.train_faces.points).norm(dim=-1).mean()
            parts["train/sa_moved_px"] = moved
        return parts


def searched_points(checkpoint: str | Path, faces: FaceSet) -> torch.Tensor:
    """The searched points stored in an SA checkpoint, or the annotations of ``faces`` when it has none."""
    tensors, _ = read_checkpoint(checkpoint)
    pts = tensors.get("sa.points")
    assert faces.points is not None
    if pts is None:
        return faces.points.clone()
    if pts.shape != faces.points.shape:
        raise ValueError(f"{checkpoint}: searched points {tuple(pts.shape)} do not fit {len(faces)} training faces")
    return pts


class GHCUStage:
    """GHCU on the frozen backbone of ``backbone`` (any checkpoint with ``dhln`` weights), targets: its searched
    points (or the annotations). Adam at ``ghcu.lr`` on :func:`~sht.losses.ghcu_loss`."""

    name = "ghcu"
    best_metric = "val/nme"
    lower_is_better = True

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        backbone: str | Path,
        train_faces: FaceSet,
        val_faces: FaceSet | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg, self.device, self.rank = cfg, device, rank
        self.codec = HeatmapCodec.from_config(cfg)
        self.backbone = build_model(cfg.model).to(device)
        load_checkpoint(backbone, {"dhln": self.backbone})
        self.backbone.eval().requires_grad_(False)
        self.truth = SearchedTruth(searched_points(backbone, train_faces))
        faces = dataclasses.replace(train_faces, points=self.truth.points)
        self.builder = BatchBuilder(faces, cfg.model.input_size, self.codec, cfg.data.lr_sizes, cfg.data.augment)
        self.sampler = EpochSampler(len(faces), cfg.train.batch_size, cfg.train.seed, rank, world_size)
        self.ghcu = GHCU(cfg.model.num_landmarks, cfg.ghcu.input_size).to(device)
        self.corrected = CorrectedModel(self.backbone, self.ghcu, self.codec)
        self.optimizer = torch.optim.Adam(self.ghcu.parameters(), lr=cfg.ghcu.lr)
        self.val_faces = val_faces

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"dhln": self.backbone, "ghcu": self.ghcu, "sa": self.truth}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"ghcu": self.optimizer}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        self.ghcu.train()
        g = step_generator(self.cfg.train.seed, step, self.rank)
        batch = self.builder.build(self.sampler.indices(step), g).to(self.device)
        assert batch.points is not None
        out = self.corrected(batch.input, batch.base)
        assert out.points is not None
        loss = ghcu_loss(out.points, batch.points, self.codec.scale, batch.visible)
        parts = LossParts(loss, {"ghcu": loss.detach()})
        backward_and_step(parts, "GHCU", list(self.ghcu.parameters()), self.optimizer, self.cfg.train.grad_clip)
        return {"train/ghcu": loss.detach(), "train/total": loss.detach()}

    def evaluate(self) -> dict[str, float]:
        return dhln_metrics(self.corrected, self.val_faces, self.codec, self.cfg.data.lr_sizes, self.device)


def ghcu_config(cfg: Config) -> Config:
    """The GHCU stage's config: ``ghcu.steps`` steps, warm-up at most a tenth of them."""
    c = copy.deepcopy(cfg)
    c.train.steps = cfg.ghcu.steps
    c.train.warmup_steps = min(c.train.warmup_steps, max(c.train.steps // 10, 1))
    c.train.eval_every = min(c.train.eval_every, max(c.train.steps, 1))
    return c


def train_ghcu(
    cfg: Config, backbone: str | Path, out_dir: str | Path, train_faces: FaceSet, val_faces: FaceSet | None = None
) -> Path:
    """Train (or resume) GHCU on ``backbone`` in ``out_dir``; returns its last checkpoint."""
    c = ghcu_config(cfg)
    seed_everything(c.train.seed)
    stage = GHCUStage(c, resolve_device(c.train.device), backbone, train_faces, val_faces)
    Trainer(c, stage, out_dir).fit()
    return Path(out_dir) / "checkpoints" / "last.safetensors"
