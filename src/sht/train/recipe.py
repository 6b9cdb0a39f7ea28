"""The four-stage training recipe of the paper (§4.1) as one resumable command.

    out/1-dhln   DHLN supervised (Eq. 4)                             sht.steps[0] steps
    out/2-fptn   FPTN + D_A + D_S on ground-truth heatmaps (Eq. 5-8)   sht.steps[1]
    out/3-joint  DHLN + FPTN on labeled pairs (Eq. 9), from 1 and 2    sht.steps[2]  (from 1 alone without FPTN)
    out/4-weak   + unlabeled images/videos (Eq. 9-10), from 3          sht.steps[3]

Each stage is an ordinary run directory: a finished stage is skipped, an interrupted one resumes from its own
``last`` checkpoint, and a stage starts from the previous stages' ``last`` checkpoints.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..config import Config
from ..data.dataset import FaceSet
from ..data.formats import DataError
from .distributed import barrier, setup
from .preflight import preflight
from .stages import FPTNStage, JointStage, SupervisedStage, load_labeled
from .trainer import Trainer, resolve_device, seed_everything, set_threads

STAGES = {1: "1-dhln", 2: "2-fptn", 3: "3-joint", 4: "4-weak"}


def stage_config(cfg: Config, stage: int) -> Config:
    """The config of one stage: its step count (and, for 3-4, the DHLN fine-tuning learning rate)."""
    c = copy.deepcopy(cfg)
    c.train.steps = cfg.sht.steps[stage - 1]
    c.train.warmup_steps = min(c.train.warmup_steps, max(c.train.steps // 10, 1))
    c.train.eval_every = min(c.train.eval_every, max(c.train.steps, 1))
    return c


def finished(run: Path, steps: int) -> bool:
    side = run / "checkpoints" / "last.json"
    return side.exists() and int(json.loads(side.read_text())["step"]) >= steps


def last(run: Path) -> Path:
    return run / "checkpoints" / "last.safetensors"


def load_weak_data(cfg: Config, dhln_checkpoint: Path, device: torch.device) -> list[tuple[FaceSet, bool]]:
    """Unlabeled image and video face sets of ``sht.weak`` (crops located with the given DHLN if configured)."""
    from ..data.unlabeled import load_unlabeled_images, load_videos
    from ..faces import landmark_locator
    from ..infer import Predictor

    w, m = cfg.sht.weak, cfg.model
    locator = None
    if w.crop == "detector":
        predictor = Predictor.from_checkpoint(dhln_checkpoint, device)
        locator = landmark_locator(predictor.landmarks_of, m.face_size, w.detector_rounds, w.track_window)
    out: list[tuple[FaceSet, bool]] = []
    if w.images:
        out.append((load_unlabeled_images(w.images, m.face_size, cfg.data.context, w, locator, progress=True), False))
    if w.videos:
        out.append((load_videos(w.videos, m.face_size, cfg.data.context, w, locator, progress=True), True))
    if not out:
        raise DataError("stage 4 (weak) has no unlabeled data: set sht.weak.images and/or sht.weak.videos")
    return out


def run_recipe(
    cfg: Config, out_dir: str | Path, stages: Sequence[int] = (1, 2, 3, 4), init: dict[int, Path] | None = None
) -> dict[int, Path]:
    """Run the requested stages in order; returns each stage's run directory. ``init`` may point a stage at
    another directory's finished stage (e.g. reuse one stage-3 run for several stage-4 variants)."""
    out = Path(out_dir)
    runs = {s: out / name for s, name in STAGES.items()}
    runs.update(init or {})
    preflight(cfg, runs, stages, {s: stage_config(cfg, s).train.steps for s in STAGES})
    set_threads(cfg.train.threads)
    info = setup(resolve_device(cfg.train.device))
    device, rank, world = info.device, info.rank, info.world_size
    labeled = None
    for s in sorted(stages):
        c = stage_config(cfg, s)
        run = out / STAGES[s]
        runs[s] = run
        if finished(run, c.train.steps) or c.train.steps == 0:
            continue
        seed_everything(c.train.seed + s)
        if labeled is None:
            labeled = load_labeled(cfg, rank)
        train_faces, val_faces = labeled
        kw = {"rank": rank, "world_size": world, "train_faces": train_faces, "val_faces": val_faces}
        if s == 1:
            stage = SupervisedStage(c, device, **kw)
        elif s == 2:
            stage = FPTNStage(c, device, **kw)
        elif s == 3:
            stage = JointStage(c, device, **kw)
            if not last(run).exists():  # without FPTN (equivariance alone) stage 2 is not needed
                stage.init_from(last(runs[1]), last(runs[2]) if c.sht.uses_transfer else None)
        else:
            unl = load_weak_data(c, last(runs[3]), device)
            stage = JointStage(c, device, weak=True, unlabeled=unl, **kw)
            if not last(run).exists():
                stage.init_from(last(runs[3]), last(runs[3]))
        Trainer(c, stage, run, rank, world).fit()
        barrier()  # every rank waits for rank 0's checkpoint before the next stage reads it
    return runs
