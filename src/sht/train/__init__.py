"""Training: the stages of the method and the loop that runs them."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .distributed import cleanup, setup
from .preflight import preflight
from .recipe import run_recipe
from .semantic_alignment import SemanticAlignmentStage
from .stages import FPTNStage, JointStage, SupervisedStage
from .trainer import Trainer, resolve_device, seed_everything, set_threads


def train(cfg: Config, out_dir: str | Path | None = None) -> dict[str, float]:
    """Train (or resume) stage 1 -- DHLN/SHN/FHS with Eq. 4, or JASRNet -- as configured (with Semantic Alignment
    when ``sa.enabled``); returns the last validation metrics.
    Under ``torchrun`` every process trains its slice of each batch (DistributedDataParallel)."""
    out = Path(out_dir or cfg.train.out_dir)
    kind = SemanticAlignmentStage if cfg.sa.enabled else SupervisedStage
    preflight(cfg, {1: out}, [1], {1: cfg.train.steps}, {1: kind.name})
    set_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    info = setup(resolve_device(cfg.train.device))
    try:
        stage = kind(cfg, info.device, info.rank, info.world_size)
        return Trainer(cfg, stage, out, info.rank, info.world_size).fit()
    finally:
        cleanup()


__all__ = ["FPTNStage", "JointStage", "SupervisedStage", "Trainer", "preflight", "run_recipe", "train"]
