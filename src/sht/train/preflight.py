"""Checks before the first step: everything the requested stages will need, each refusal one line naming the
missing piece, in seconds (no image is read, no network built).

- the labeled data sources exist and are non-empty (``data.train``, ``data.val``);
- stage 4 has unlabeled data (``sht.weak.images`` / ``sht.weak.videos``) and it exists;
- stages 2-4 have the VGG-19 ``conv1_2`` weights of the perceptual loss (Eq. 8) when it is used;
- a stage that starts from earlier ones finds them finished or requested;
- every output folder is writable;
- a run to be resumed was written for the same stage and model config.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..config import Config, ConfigError, check_model_config
from ..data.dataset import check_source
from ..data.formats import IMAGE_SUFFIXES, DataError
from ..data.unlabeled import VIDEO_SUFFIXES
from ..errors import CheckpointError

STAGE_NAMES = {1: "dhln", 2: "fptn", 3: "joint", 4: "weak"}
NEEDS = {3: (1, 2), 4: (3,)}


def check_data(cfg: Config) -> None:
    """``data.train`` and ``data.val`` sources exist and hold labeled faces."""
    if not cfg.data.train:
        raise ConfigError("data.train is empty: give at least one labeled data source")
    for key, sources in (("data.train", cfg.data.train), ("data.val", cfg.data.val)):
        for src in sources:
            try:
                check_source(src)
            except DataError as exc:
                raise DataError(f"{key}: {exc}") from None


def check_weak_data(cfg: Config) -> None:
    """Stage 4 needs unlabeled images and/or videos, and each source must exist and hold some."""
    w = cfg.sht.weak
    if not (w.images or w.videos):
        raise ConfigError("stage 4 (weak) needs unlabeled data: set sht.weak.images and/or sht.weak.videos")
    for src in w.images:
        p = Path(src)
        if not p.is_dir():
            raise DataError(f"sht.weak.images: {src!r} is not a folder")
        if not any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir()):
            raise DataError(f"sht.weak.images: {src!r} holds no images")
    for src in w.videos:
        p = Path(src)
        if p.is_file():
            continue
        if not p.is_dir():
            raise DataError(f"sht.weak.videos: {src!r} is neither a video file nor a folder")
        if not any(q.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES for q in p.rglob("*")):
            raise DataError(f"sht.weak.videos: {src!r} holds no videos or frames")


def check_vgg(cfg: Config) -> None:
    """The perceptual loss of Eq. 8 reads VGG-19 conv1_2 weights from a local file (nothing is downloaded); it is
    needed when FPTN's own updates or DHLN's transfer terms weigh it."""
    if cfg.sht.fptn_weights[2] <= 0 and cfg.sht.dhln_weights[2] <= 0:
        return
    from ..models.vgg import VGG19Conv12

    try:
        VGG19Conv12.from_npz(cfg.fptn.vgg_weights)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"fptn.vgg_weights (stages 2-4 with a perceptual term): {exc}") from None


def check_writable(folder: Path) -> None:
    """``folder`` (created if needed) accepts new files."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".sht-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output folder {folder} is not writable ({exc.strerror or exc})") from None


def _last_doc(run: Path) -> dict | None:
    side = run / "checkpoints" / "last.json"
    if not side.is_file():
        return None
    try:
        return json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{side}: unreadable checkpoint description ({exc}); use a new output folder") from None


def check_resume(cfg: Config, run: Path, stage_name: str) -> int | None:
    """The step of ``run``'s last checkpoint if there is one; refuses one of another stage or model config."""
    doc = _last_doc(run)
    if doc is None:
        return None
    if doc.get("stage") != stage_name:
        raise CheckpointError(
            f"{run}: holds a {doc.get('stage')!r} run, cannot resume it as stage {stage_name!r}; use a new out_dir"
        )
    check_model_config(run, doc.get("config", {}).get("model"), cfg)
    return int(doc.get("step", 0))


def preflight(
    cfg: Config,
    runs: dict[int, Path],
    stages: Sequence[int],
    steps: dict[int, int],
    names: dict[int, str] | None = None,
) -> None:
    """Check everything ``stages`` (of 1-4, run in ``runs[s]`` for ``steps[s]`` steps) will need; ``names``: the
    stage names their checkpoints carry, where not :data:`STAGE_NAMES` (e.g. ``sa`` for Semantic Alignment)."""
    names = {**STAGE_NAMES, **(names or {})}
    todo = [s for s in sorted(stages) if steps[s] > 0]
    pending = []
    for s in todo:
        step = check_resume(cfg, runs[s], names[s])
        if step is None or step < steps[s]:
            pending.append(s)
    if not pending:
        return
    check_data(cfg)
    for s in pending:
        for need in NEEDS.get(s, ()):
            if need in todo or (need == 2 and not cfg.sht.uses_transfer):  # no FPTN: stage 3 needs only stage 1
                continue
            doc = _last_doc(runs[need])
            if doc is None:
                raise ConfigError(
                    f"stage {s} starts from stage {need}, which is neither requested nor finished in {runs[need]}"
                )
    if 2 in pending or (cfg.sht.uses_transfer and any(s >= 3 for s in pending)):
        check_vgg(cfg)
    if 4 in pending:
        check_weak_data(cfg)
    for s in pending:
        check_writable(runs[s])
