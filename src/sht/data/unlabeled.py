"""Unlabeled faces for weak supervision (paper §3.3, Eq. 9-10): still images and video clips.

Sources: folders of face images (no landmarks needed), video files (read with imageio-ffmpeg, the ``video``
extra), folders of video files, folders of frames whose names encode the clip (``clip_pattern``, e.g. the
YouTube-Faces naming ``<person>_<clip><frame>.jpg``), and folders of clip folders (every folder below that holds
images is one clip, e.g. 300VW's ``<id>/frames/``). Crops follow the ``sht.weak.crop`` policy: ``fixed`` (one
box for every image) or ``detector``: a ``locator`` callable handed in by the caller (the training stage builds
it from its own DHLN with :func:`sht.faces.landmark_locator`: Haar face box, calibrated, refined with the landmark
model, smoothed along each clip). This module runs no network itself. The result is a
:class:`~sht.data.dataset.FaceSet` without landmarks; videos carry clip groups.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from ..config import WeakConfig
from .dataset import FaceSet
from .formats import IMAGE_SUFFIXES, DataError, load_image
from .transforms import CropBox, crop_image, image_to_tensor

Locator = Callable[[Sequence[Image.Image], Sequence[CropBox], bool], list[CropBox]]
"""``(images, fallback crops, track along a clip) -> canonical crops`` (see :func:`sht.faces.landmark_locator`)."""

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def read_video_frames(path: str | Path, count: int) -> list[Image.Image]:
    """``count`` frames spread evenly over a video file (all frames if it has fewer)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DataError(f"{path}: reading video files needs the video extra (pip install 'sht[video]')") from None
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: video file not found")
    try:
        gen = imageio_ffmpeg.read_frames(str(p))
        meta = next(gen)
        w, h = meta["size"]
        frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in gen]
    except (RuntimeError, OSError, StopIteration, ValueError) as exc:
        raise DataError(f"{p}: cannot decode video ({str(exc)[:100]})") from None
    if not frames:
        raise DataError(f"{p}: video holds no frames")
    keep = np.unique(np.linspace(0, len(frames) - 1, min(count, len(frames))).round().astype(int))
    return [Image.fromarray(frames[i].copy()) for i in keep]


def frame_clips(folder: str | Path, pattern: str) -> dict[str, list[Path]]:
    """Group the images of a frame folder by clip: the clip key is the groups of ``pattern`` matched on each
    file stem. Files that do not match are refused with their name."""
    root = Path(folder)
    rx = re.compile(pattern)
    clips: dict[str, list[Path]] = {}
    for p in sorted(q for q in root.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
        m = rx.match(p.stem)
        if m is None:
            raise DataError(f"{p}: name does not match the clip pattern {pattern!r}")
        clips.setdefault("/".join(m.groups()) or m.group(0), []).append(p)
    if not clips:
        raise DataError(f"{root}: no images found")
    return clips


def fixed_crop(img: Image.Image, box: Sequence[float]) -> CropBox:
    """The canonical crop given as (centre x, centre y, side) fractions: centre relative to width/height, side
    relative to the shorter side."""
    w, h = img.size
    cx, cy, side = box[0] * w, box[1] * h, box[2] * min(w, h)
    return CropBox(cx - side / 2, cy - side / 2, side)


def locate(
    images: Sequence[Image.Image], cfg: WeakConfig, locator: Locator | None = None, track: bool = False
) -> list[CropBox]:
    """Canonical crops of faces by the configured policy (see module docstring)."""
    crops = [fixed_crop(im, cfg.box) for im in images]
    if cfg.crop == "fixed":
        return crops
    if locator is None:
        raise DataError("sht.weak.crop=detector needs a face locator (the stage builds one from its DHLN)")
    return locator(images, crops, track)


def _faceset(
    images: list[torch.Tensor],
    names: list[str],
    size: int,
    context: float,
    problems: list[str],
    groups: list[int] | None = None,
) -> FaceSet:
    if not images:
        raise DataError(f"no unlabeled face could be used; first problem: {problems[0] if problems else 'none'}")
    return FaceSet(
        torch.stack(images), None, names, size, context, problems, None if groups is None else torch.tensor(groups)
    )


def _crop_all(images: Sequence[Image.Image], crops: Sequence[CropBox], size: int, context: float) -> list[torch.Tensor]:
    out = int(round(size * context))
    return [image_to_tensor(crop_image(im, c.expand(out / size), out)) for im, c in zip(images, crops, strict=True)]


def load_unlabeled_images(
    folders: Sequence[str],
    size: int,
    context: float,
    cfg: WeakConfig,
    locator: Locator | None = None,
    progress: bool = False,
    chunk: int = 256,
) -> FaceSet:
    """Face images without landmarks (SHT-i); bad files are reported in ``problems`` and skipped."""
    paths: list[Path] = []
    for f in folders:
        root = Path(f)
        if not root.is_dir():
            raise DataError(f"unlabeled image source {f!r} is not a folder")
        paths += sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if cfg.limit:
        paths = paths[: cfg.limit]
    if not paths:
        raise DataError(f"no images in {', '.join(folders)}")
    tensors, names, problems = [], [], []
    for i in tqdm(range(0, len(paths), chunk), desc="unlabeled images", disable=not progress, leave=False):
        imgs, ok = [], []
        for p in paths[i : i + chunk]:
            try:
                imgs.append(load_image(p))
                ok.append(p)
            except DataError as exc:
                problems.append(str(exc))
        if imgs:
            tensors += _crop_all(imgs, locate(imgs, cfg, locator), size, context)
            names += [p.name for p in ok]
    return _faceset(tensors, names, size, context, problems)


def load_videos(
    sources: Sequence[str],
    size: int,
    context: float,
    cfg: WeakConfig,
    locator: Locator | None = None,
    progress: bool = False,
) -> FaceSet:
    """Frames of video clips (SHT-v), each clip a group; crops are tracked along the clip."""
    clips: list[tuple[str, list[Image.Image]]] = []
    problems: list[str] = []
    for src in sources:
        p = Path(src)
        if p.is_file():
            clips.append((p.stem, read_video_frames(p, cfg.frames_per_video)))
        elif p.is_dir():
            videos = sorted(q for q in p.iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)
            has_images = any(q.suffix.lower() in IMAGE_SUFFIXES for q in p.iterdir())
            if not videos and not has_images:
                # a folder of clip folders (e.g. 300VW's <id>/frames/): every folder holding images is one clip
                for d in sorted({f.parent for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES}):
                    frames = []
                    for f in sorted(q for q in d.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
                        try:
                            frames.append(load_image(f))
                        except DataError as exc:
                            problems.append(str(exc))
                    if len(frames) > cfg.frames_per_video:
                        keep = np.linspace(0, len(frames) - 1, cfg.frames_per_video).round().astype(int)
                        frames = [frames[i] for i in keep]
                    clips.append((str(d.relative_to(p)), frames))
            elif videos:
                for v in videos:
                    try:
                        clips.append((v.stem, read_video_frames(v, cfg.frames_per_video)))
                    except DataError as exc:
                        problems.append(str(exc))
            else:
                for key, files in frame_clips(p, cfg.clip_pattern).items():
                    frames = []
                    for f in files:
                        try:
                            frames.append(load_image(f))
                        except DataError as exc:
                            problems.append(str(exc))
                    clips.append((f"{p.name}/{key}", frames))
        else:
            raise DataError(f"video source {src!r} is neither a file nor a folder")
    tensors, names, groups = [], [], []
    for g, (key, frames) in enumerate(tqdm(clips, desc="video clips", disable=not progress, leave=False)):
        if not frames:
            continue
        tensors += _crop_all(frames, locate(frames, cfg, locator, track=True), size, context)
        names += [f"{key}#{i}" for i in range(len(frames))]
        groups += [g] * len(frames)
    return _faceset(tensors, names, size, context, problems, groups)
