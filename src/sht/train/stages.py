"""The training stages of the method, in one place.

Stage 1, :class:`SupervisedStage`: DHLN (or its one-stream variants SHN/FHS) trained on labeled faces with
Eq. 4. Each stage owns its networks, optimisers, data and one optimisation step; :class:`~sht.train.trainer.Trainer`
owns the loop (schedule, logging, evaluation, checkpoints, resume).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..data.dataset import BatchBuilder, EpochSampler, FaceSet, load_sources, step_generator
from ..data.formats import DataError
from ..data.heatmaps import HeatmapCodec
from ..evaluation import evaluate_model
from ..losses import dhln_loss
from ..models import DHLN


class NonFiniteLoss(RuntimeError):
    """A loss or gradient that is NaN or infinite; the step is skipped."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def split_validation(train: FaceSet, cfg: Config) -> tuple[FaceSet, FaceSet | None]:
    """Validation faces: ``data.val`` sources if given, else none."""
    if cfg.data.val:
        val = load_sources(
            cfg.data.val,
            cfg.model.face_size,
            cfg.data.margin,
            cfg.data.context,
            cfg.model.num_landmarks,
            cfg.data.cache_dir,
        )
        if cfg.data.val_limit and len(val) > cfg.data.val_limit:
            val = val.subset(torch.linspace(0, len(val) - 1, cfg.data.val_limit).round().long().unique())
        return train, val
    return train, None


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when enabled (no loss scaling needed); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_finite(named: Iterator[tuple[str, torch.Tensor]]) -> None:
    for name, value in named:
        if not torch.isfinite(value).all():
            raise NonFiniteLoss(name)


class SupervisedStage:
    """Stage 1: DHLN / SHN / FHS on labeled faces, Eq. 4 with intermediate supervision on every stack."""

    name = "dhln"

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        train_faces: FaceSet | None = None,
        val_faces: FaceSet | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.rank = rank
        self.codec = HeatmapCodec.from_config(cfg)
        m = cfg.model
        if train_faces is None:
            train_faces = load_sources(
                cfg.data.train,
                m.face_size,
                cfg.data.margin,
                cfg.data.context,
                m.num_landmarks,
                cfg.data.cache_dir,
                progress=rank == 0,
            )
            train_faces, val_faces = split_validation(train_faces, cfg)
        if train_faces.num_points != m.num_landmarks:
            raise DataError(
                f"training faces have {train_faces.num_points} points but model.num_landmarks is {m.num_landmarks}"
            )
        self.train_faces, self.val_faces = train_faces, val_faces
        self.builder = BatchBuilder(train_faces, m.input_size, self.codec, cfg.data.lr_sizes, cfg.data.augment)
        self.sampler = EpochSampler(len(train_faces), cfg.train.batch_size, cfg.train.seed, rank, world_size)
        self.model = DHLN(m).to(device, memory_format=torch.channels_last)
        self.net: nn.Module = self.model
        if world_size > 1:
            self.net = nn.parallel.DistributedDataParallel(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.lower_is_better = m.has_landmarks
        self.best_metric = "val/nme" if m.has_landmarks else "val/psnr"

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"dhln": self.model}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"dhln": self.optimizer}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.model.train()
        g = step_generator(cfg.train.seed, step, self.rank)
        batch = self.builder.build(self.sampler.indices(step), g).to(self.device)
        inp = batch.input.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, cfg.train.amp):
            out = self.net(inp, batch.base)
        loss = dhln_loss(out.heatmaps, out.face, batch.heatmaps, batch.hr, cfg.loss, self.codec, batch.points)
        self.optimizer.zero_grad(set_to_none=True)
        check_finite(iter([("loss " + "+".join(k for k in loss.parts if k != "total"), loss.total)]))
        loss.total.backward()
        if cfg.train.grad_clip > 0:
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.grad_clip)
            check_finite(iter([("gradient norm", norm)]))
        else:
            check_finite((f"gradient of {n}", p.grad) for n, p in self.model.named_parameters() if p.grad is not None)
        self.optimizer.step()
        return {f"train/{k}": v for k, v in loss.parts.items()}

    def evaluate(self) -> dict[str, float]:
        if self.val_faces is None:
            return {}
        res = evaluate_model(self.model, self.val_faces, self.codec, self.cfg.data.lr_sizes, device=self.device)
        out: dict[str, float] = {}
        for s, r in res.items():
            for k, v in r.summary().items():
                if k != "n":
                    out[f"val/{k}@{s}"] = v
        for key in ("nme", "psnr", "ssim"):
            vals = [v for k, v in out.items() if k.startswith(f"val/{key}@")]
            if vals:
                out[f"val/{key}"] = float(np.mean(vals))
        return out
