"""Landmarks on video: a streaming frame reader, a landmark tracker (``Detector.track``), a One-Euro smoother
and the writers of ``sht detect VIDEO``.

**Reading** (:class:`VideoReader`, the ``video`` extra): frames are decoded by imageio-ffmpeg one at a time, never
the whole clip in memory, with ``-fps_mode passthrough`` so that a variable-frame-rate file gives each coded frame
once (ffmpeg's default for raw output would duplicate or drop frames to a constant rate). Each frame's time is its
presentation timestamp from the container, read beforehand from the packets (``ffmpeg -c copy -f framecrc``: no
decoding) and sorted; when that listing fails, times are ``index / fps`` with the container's nominal rate
(``VideoInfo.timestamps`` says which).

**Tracking** (:class:`Track`): faces are found by the detector's pluggable face detector
(``Detector.face_detector()``) on the first frame, on the frame after a face was lost, on every frame while no face
is tracked, and every ``detect_every`` frames if set. In between, each face's crop on the next frame is the
canonical box of its last landmarks (as photo mode's refinement does), moved by the face's recent velocity (a
constant-velocity model, averaged over frames), then refined ``rounds - 1`` times on that frame. The crops of all
tracked faces over ``batch_frames`` frames go through the network in one batched call per round, every frame of a
batch starting from the last frame before it (moved by the velocity times the frames in between). A loss found
after the first frame of a batch is not trusted (its starting crop was older): the batch is cut there and that
frame is predicted again from its predecessor, so a face is declared lost only from the crop of the frame before. A
new face is tracked frame by frame until it has a velocity, and gets photo mode's ``refine + 1`` passes from its
calibrated detector box on the frame where it is found.

**The lost rule** (:meth:`TrackConfig.lost_reason`): a face is lost on a frame when

1. its landmark confidence, the mean over the 68 points of the heatmap peak, is below ``min_score`` (0.6): with the
   release weights, on canonical crops of 120 *training* faces (Helen train, YTF68 train) at 16 and 32 px, 1 % of
   the faces score below 0.70 and the lowest 0.65, while crops off the face (shifted by half a side, an image
   corner, 60 % outside the image) score a median of about 0.5, 90 % of them below 0.65
   (``python benchmarks/video.py --only score``);
2. fewer than ``min_inside`` (half) of its landmarks lie inside the frame (the face is leaving it);
3. its crop side changes by more than ``max_scale_change`` (1.5x) from the previous frame, or falls below
   ``min_side`` (4 px) -- the landmarks collapsed or exploded; or
4. its crop overlaps a better-scoring face's crop by IoU above ``duplicate_iou`` (0.5): two ids on one face.

A lost face is reported on that frame (status ``lost``, no landmarks, the reason), never dropped silently. When the
face detector runs again, its boxes are matched to the tracked faces and then to the faces lost in the last
``keep_lost_s`` seconds by the IoU of their canonical crops (``iou_match``, 0.3): a match keeps (or revives) the id,
an unmatched box starts a new id; a new box whose landmarks fail rule 1 or 2 at once is counted as a rejected
detection and gets no id.

**Smoothing** (:class:`OneEuroFilter`, Casiez et al., CHI 2012): optional, per landmark track, reset when a face is
lost; the raw landmarks are always kept and the smoothed ones are an extra field.

This module imports nothing from training; the network is reached only through the ``Detector`` handed in.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from .data.formats import DataError
from .data.transforms import CropBox, canonical_box, crop_image
from .data.unlabeled import VIDEO_SUFFIXES
from .faces import FaceBox, crop_size_for, refine_crops
from .report import draw_landmarks

if TYPE_CHECKING:
    from .infer import Detector

__all__ = [
    "VIDEO_SUFFIXES",
    "Frame",
    "FrameResult",
    "OneEuroConfig",
    "OneEuroFilter",
    "Track",
    "TrackConfig",
    "TrackedFace",
    "VideoInfo",
    "VideoReader",
    "is_video",
]


def is_video(path: str | Path) -> bool:
    """A video file by its suffix (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``, ``.m4v``)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    """One decoded frame: its index in the clip, its time in seconds from the first frame, and the RGB image."""

    index: int
    time: float
    image: Image.Image


@dataclass
class VideoInfo:
    """What the container says about a clip. ``frames`` counts its video packets (None when unknown);
    ``timestamps`` is ``container`` (per-frame presentation times) or ``nominal`` (``index / fps``)."""

    path: str
    width: int
    height: int
    fps: float
    frames: int | None
    duration: float | None
    codec: str
    timestamps: str
    variable_frame_rate: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ffmpeg() -> str:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise DataError("reading videos needs the video extra: pip install 'sht[video]'") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def _last_error(text: str) -> str:
    """The most telling line of ffmpeg's stderr: its first that is not the banner, progress or a summary."""
    generic = (
        "ffmpeg version",
        "  ",
        "frame=",
        "Conversion failed",
        "Error number",
        "code ",
        "=== stderr",
        "Error opening input file ",
    )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith(generic)]
    return re.sub(r"^\[[^\]]*\]\s*", "", lines[0]) if lines else "ffmpeg could not read it"


def packet_times(path: str | Path) -> np.ndarray:
    """Presentation times (seconds from the first frame, sorted) of the first video stream's packets, read without
    decoding. Raises :class:`DataError` with ffmpeg's reason when the file cannot be opened."""
    cmd = [_ffmpeg(), "-v", "error", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    res = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    tb, pts, broken = None, [], False
    for line in res.stdout.splitlines():
        m = re.match(r"#tb 0: (\d+)/(\d+)", line)
        if m:
            tb = int(m.group(1)) / int(m.group(2))
        elif line.startswith(("#codec_id 0: none", "#dimensions 0: 0x0")):
            broken = True
        elif line and not line.startswith("#"):
            parts = [p.strip() for p in line.split(",")]
            if len(parts) >= 3 and parts[0] == "0":
                try:
                    pts.append(int(parts[2]))
                except ValueError:  # NOPTS packets
                    continue
    if tb is None:
        raise DataError(f"{path}: cannot read video ({_last_error(res.stderr)})")
    if broken:
        raise DataError(f"{path}: cannot read video (its video stream has no codec or size: truncated or corrupt?)")
    t = np.sort(np.asarray(pts, dtype=np.float64)) * tb
    return t - t[0] if len(t) else t


class VideoReader:
    """Streams the frames of a video file (see the module docstring for frame times and variable frame rate).

    Opening probes the file and raises :class:`DataError` (one line) when it is missing, not a video, has no video
    stream or holds no frame. A decoding failure after some frames (a truncated file) ends the stream and is kept
    in ``problems``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: video file not found")
        times: np.ndarray | None
        try:
            times = packet_times(self.path)
        except DataError:
            raise
        except OSError:
            times = None
        gen = self._open()
        try:
            meta = next(gen)
        except (RuntimeError, OSError, StopIteration) as exc:
            raise DataError(f"{self.path}: cannot decode video ({_last_error(str(exc))})") from None
        finally:
            gen.close()
        w, h = (int(v) for v in meta["size"])
        fps = float(meta.get("fps") or 0.0)
        if not fps or not math.isfinite(fps):
            fps = 25.0
        dur = meta.get("duration")
        vfr = False
        if times is not None and len(times) >= 3:
            d = np.diff(times)
            d = d[d > 0]
            vfr = bool(len(d) and (d.max() - d.min()) > 0.1 * np.median(d))
        if times is not None and len(times) == 0:
            raise DataError(f"{self.path}: video holds no frames")
        self._times = times
        self.info = VideoInfo(
            str(self.path),
            w,
            h,
            fps,
            int(len(times)) if times is not None else None,
            float(dur) if dur else None,
            str(meta.get("codec", "")),
            "container" if times is not None else "nominal",
            vfr,
        )
        self.problems: list[str] = []

    def _open(self):  # noqa: ANN202 - imageio-ffmpeg's generator
        import imageio_ffmpeg

        return imageio_ffmpeg.read_frames(str(self.path), output_params=["-fps_mode", "passthrough"])

    def time_of(self, index: int) -> float:
        t = self._times
        if t is not None and index < len(t):
            return float(t[index])
        last = (len(t) - 1, float(t[-1])) if t is not None and len(t) else (0, 0.0)
        return last[1] + (index - last[0]) / self.info.fps

    def __iter__(self) -> Iterator[Frame]:
        w, h = self.info.width, self.info.height
        gen = self._open()
        i = 0
        try:
            next(gen)
            while True:
                try:
                    raw = next(gen)
                except StopIteration:
                    break
                except (RuntimeError, OSError) as exc:
                    if i == 0:
                        raise DataError(f"{self.path}: cannot decode video ({_last_error(str(exc))})") from None
                    self.problems.append(f"{self.path}: decoding stopped after {i} frames ({_last_error(str(exc))})")
                    break
                arr = np.frombuffer(raw, np.uint8)
                if arr.size != w * h * 3:
                    self.problems.append(f"{self.path}: frame {i} is incomplete; stopped there")
                    break
                yield Frame(i, self.time_of(i), Image.fromarray(arr.reshape(h, w, 3).copy()))
                i += 1
        finally:
            gen.close()
        if i == 0:
            raise DataError(f"{self.path}: video holds no decodable frame")
        if self.info.frames is not None and i < self.info.frames:
            self.problems.append(f"{self.path}: {i} of {self.info.frames} frames could be decoded (truncated file?)")


def as_frames(frames: Iterable[Any], fps: float) -> Iterator[Frame]:
    """:class:`Frame` objects from frames, PIL images or ``(H, W, 3)`` uint8 arrays (times ``index / fps``)."""
    for i, f in enumerate(frames):
        if isinstance(f, Frame):
            yield f if f.image.mode == "RGB" else Frame(f.index, f.time, f.image.convert("RGB"))
        else:
            img = f if isinstance(f, Image.Image) else Image.fromarray(np.asarray(f, dtype=np.uint8))
            yield Frame(i, i / fps, img.convert("RGB"))


# --- smoothing --------------------------------------------------------------------------------------------------


@dataclass
class OneEuroConfig:
    """One-Euro filter parameters: ``min_cutoff`` (Hz) is the cutoff at rest (lower: less jitter, more lag),
    ``beta`` raises the cutoff with speed, measured in face sizes (crop sides) per second so that one setting fits
    every face size, and ``d_cutoff`` (Hz) smooths the speed estimate."""

    min_cutoff: float = 1.0
    beta: float = 5.0
    d_cutoff: float = 1.0

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0:
            raise ValueError(f"One-Euro filter: min_cutoff and d_cutoff must be > 0 and beta >= 0, got {self}")

    @classmethod
    def parse(cls, text: str) -> OneEuroConfig:
        """From ``min_cutoff=1,beta=5,d_cutoff=1`` (any subset; empty for the defaults)."""
        kw: dict[str, float] = {}
        names = {f for f in cls.__dataclass_fields__}
        for item in filter(None, (s.strip() for s in text.split(","))):
            key, _, val = item.partition("=")
            if key not in names:
                raise ValueError(f"unknown smoothing parameter {key!r}; use {', '.join(sorted(names))}")
            try:
                kw[key] = float(val)
            except ValueError:
                raise ValueError(f"smoothing parameter {key} takes a number, got {val!r}") from None
        return cls(**kw)


def _alpha(dt: float, cutoff: np.ndarray | float) -> np.ndarray | float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) on an array signal, element by element:
    ``x_hat = a x + (1 - a) x_hat_prev`` with ``a = 1 / (1 + tau / dt)``, ``tau = 1 / (2 pi f_c)`` and the cutoff
    ``f_c = min_cutoff + beta |dx_hat| / scale`` from the low-passed derivative ``dx_hat`` (cutoff ``d_cutoff``).
    Times come with the samples, so a variable frame rate is handled."""

    def __init__(self, cfg: OneEuroConfig | None = None) -> None:
        self.cfg = cfg or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self._x is None or self._dx is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # a repeated timestamp: nothing new to filter over
            return self._x.copy()
        c = self.cfg
        dx = (x - self._x) / dt
        self._dx = _alpha(dt, c.d_cutoff) * dx + (1 - _alpha(dt, c.d_cutoff)) * self._dx
        a = _alpha(dt, c.min_cutoff + c.beta * np.abs(self._dx) / max(scale, 1e-9))
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


# --- tracking ---------------------------------------------------------------------------------------------------


@dataclass
class TrackConfig:
    """How :class:`Track` follows faces (the rules are in the module docstring)."""

    batch_frames: int = 8
    rounds: int = 2
    min_score: float = 0.6
    min_inside: float = 0.5
    max_scale_change: float = 1.5
    min_side: float = 4.0
    duplicate_iou: float = 0.5
    iou_match: float = 0.3
    detect_every: int = 0
    keep_lost_s: float = 5.0
    smooth: OneEuroConfig | None = None

    def __post_init__(self) -> None:
        if self.batch_frames < 1 or self.rounds < 1:
            raise ValueError(f"batch_frames and rounds must be >= 1, got {self.batch_frames}, {self.rounds}")
        if self.max_scale_change <= 1:
            raise ValueError(f"max_scale_change must be > 1, got {self.max_scale_change}")

    def lost_reason(
        self, landmarks: np.ndarray, scores: np.ndarray, crop: CropBox | None, prev_side: float, size: tuple[int, int]
    ) -> str | None:
        """Why a face's prediction on a frame loses it (rules 1-3), or None; ``crop`` is the canonical box of the
        landmarks (None when they span an empty box), ``size`` the frame's ``(W, H)``."""
        score = float(np.mean(scores))
        if not math.isfinite(score) or score < self.min_score:
            return f"landmark score {score:.2f} < {self.min_score}"
        w, h = size
        inside = float(
            np.mean((landmarks[:, 0] >= 0) & (landmarks[:, 0] <= w) & (landmarks[:, 1] >= 0) & (landmarks[:, 1] <= h))
        )
        if inside < self.min_inside:
            return f"{inside:.0%} of the landmarks inside the frame < {self.min_inside:.0%}"
        if crop is None or crop.side < self.min_side:
            return f"face smaller than {self.min_side} px"
        ratio = crop.side / prev_side
        if not 1 / self.max_scale_change <= ratio <= self.max_scale_change:
            return f"face size changed {ratio:.2f}x in one frame"
        return None


def iou(a: CropBox, b: CropBox) -> float:
    """Intersection over union of two square crops."""
    ix = max(0.0, min(a.x0 + a.side, b.x0 + b.side) - max(a.x0, b.x0))
    iy = max(0.0, min(a.y0 + a.side, b.y0 + b.side) - max(a.y0, b.y0))
    inter = ix * iy
    union = a.side**2 + b.side**2 - inter
    return inter / union if union > 0 else 0.0


@dataclass
class TrackedFace:
    """One face on one frame. ``status``: ``detected`` (found by the face detector on this frame: new or
    re-found), ``tracked`` (its crop came from its previous landmarks) or ``lost`` (``landmarks`` None, ``reason``
    says why). ``crop`` is the canonical box of the landmarks (for a lost face: the crop it was searched in),
    ``view`` the crop of the final prediction as the network saw it (native resolution), ``face`` the
    hallucinated face, ``smoothed`` the One-Euro landmarks when smoothing is on."""

    id: int
    status: str
    crop: CropBox
    landmarks: np.ndarray | None
    scores: np.ndarray
    face: Image.Image | None = None
    view: Image.Image | None = None
    reason: str | None = None
    smoothed: np.ndarray | None = None

    @property
    def score(self) -> float:
        """Mean heatmap peak over the landmarks (the confidence of the lost rule)."""
        return float(np.mean(self.scores))

    @property
    def box(self) -> tuple[float, float, float, float]:
        c = self.crop
        return (c.x0, c.y0, c.x0 + c.side, c.y0 + c.side)


@dataclass
class FrameResult:
    """The faces of one frame; ``detected`` says whether the face detector ran on it."""

    index: int
    time: float
    image: Image.Image
    faces: list[TrackedFace]
    detected: bool = False


@dataclass
class _State:
    crop: CropBox
    start: int
    smoother: OneEuroFilter | None = None
    velocity: tuple[float, float] = (0.0, 0.0)  # crop centre motion per frame, averaged (constant-velocity model)
    last: int = -1  # the frame of ``crop``

    def predicted(self, ahead: int) -> CropBox:
        """The crop ``ahead`` frames after ``last``, moved at the tracked velocity."""
        vx, vy = self.velocity
        return CropBox(self.crop.x0 + ahead * vx, self.crop.y0 + ahead * vy, self.crop.side)


@dataclass
class TrackSummary:
    """The life of one face id: the frames it was seen on, its segments ``[first, last]`` and where it was lost."""

    id: int
    frames: int = 0
    segments: list[list[int]] = field(default_factory=list)
    lost_at: list[int] = field(default_factory=list)
    lost_reasons: list[str] = field(default_factory=list)


FaceDetectorFn = Callable[[Image.Image], list[FaceBox]]


class Track:
    """Landmarks of every face along a clip, frame by frame (iterate it; see the module docstring).

    ``frames``: a video path, or an iterable of :class:`Frame`, PIL images or arrays (times ``index / fps``).
    ``boxes``: face boxes ``(x0, y0, x1, y1)`` on the first frame, used instead of the face detector there.
    ``face_detector``: a callable image -> :class:`~sht.faces.FaceBox` list with a ``calibration`` (default: the
    detector's). ``stats`` counts frames, face-detector calls, network calls and crops; ``summaries`` the ids."""

    def __init__(
        self,
        detector: Detector,
        frames: str | Path | Iterable[Any],
        config: TrackConfig | None = None,
        fps: float = 30.0,
        boxes: Sequence[Sequence[float]] | None = None,
        face_detector: FaceDetectorFn | None = None,
    ) -> None:
        self.detector = detector
        self.cfg = config or TrackConfig()
        self.reader = VideoReader(frames) if isinstance(frames, str | Path) else None
        self.info = self.reader.info if self.reader is not None else None
        self._frames = self.reader if self.reader is not None else frames
        self.fps = self.info.fps if self.info is not None else fps
        self._boxes = [FaceBox(*map(float, b[:4])) for b in boxes] if boxes is not None else None
        self._fd = face_detector
        self.stats = {"frames": 0, "detector_calls": 0, "network_calls": 0, "crops": 0, "rejected_detections": 0}
        self.summaries: dict[int, TrackSummary] = {}
        self._active: dict[int, _State] = {}
        self._lost: dict[int, tuple[CropBox, float]] = {}
        self._next_id = 0

    @property
    def problems(self) -> list[str]:
        return self.reader.problems if self.reader is not None else []

    # the network, counted
    def _predict(self, images: list[Image.Image], crops: list[CropBox]):  # noqa: ANN202
        pred = self.detector.predictor
        sizes = [crop_size_for(c, pred.face_size) for c in crops]
        views = [crop_image(im, c, n) for im, c, n in zip(images, crops, sizes, strict=True)]
        self.stats["network_calls"] += 1
        self.stats["crops"] += len(views)
        out = pred.predict(views, batch_size=max(64, len(views)))
        pts = [c.to_source(p.landmarks, n) for c, p, n in zip(crops, out, sizes, strict=True)]
        return pts, out, views

    def _landmarks_of(self, views: list[Image.Image]) -> list[np.ndarray]:
        self.stats["network_calls"] += 1
        self.stats["crops"] += len(views)
        return self.detector.predictor.landmarks_of(views)

    def _passes(self, images: list[Image.Image], crops: list[CropBox]):  # noqa: ANN202
        """``rounds`` batched passes from ``crops``; returns the final crops, landmarks, predictions and views."""
        cur = list(crops)
        margin = self.detector.config.data.margin
        for _ in range(self.cfg.rounds - 1):
            pts, _, _ = self._predict(images, cur)
            cur = [_canonical(p, c, margin) or c for p, c in zip(pts, cur, strict=True)]
        pts, preds, views = self._predict(images, cur)
        return cur, pts, preds, views

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _detect(self, frame: Frame) -> tuple[list[int], dict[int, _State]]:
        """Run the face detector on ``frame``; returns the ids found there (new or revived) with their states."""
        fd = self._fd or self.detector.face_detector()
        if self._boxes is not None:
            found, self._boxes = self._boxes, None
        else:
            self.stats["detector_calls"] += 1
            found = fd(frame.image)
        cal = fd.calibration
        crops = [cal.to_crop(b) for b in found if b.width > 0 and b.height > 0]
        taken: set[int] = set()
        fresh: list[tuple[int | None, CropBox]] = []
        for c in crops:
            best = max(self._active.items(), key=lambda kv: iou(kv[1].crop, c), default=None)
            if best is not None and best[0] not in taken and iou(best[1].crop, c) >= self.cfg.iou_match:
                taken.add(best[0])
                continue
            fresh.append((None, c))
        # match the rest to recently lost ids, best overlaps first
        pairs = sorted(
            ((iou(lc, c), lid, k) for k, (_, c) in enumerate(fresh) for lid, (lc, _) in self._lost.items()),
            reverse=True,
        )
        used_ids: set[int] = set()
        used_k: set[int] = set()
        for v, lid, k in pairs:
            if v >= self.cfg.iou_match and lid not in used_ids and k not in used_k:
                fresh[k] = (lid, fresh[k][1])
                used_ids.add(lid)
                used_k.add(k)
        if not fresh:
            return [], {}
        extra = max(0, self.detector.refine + 1 - self.cfg.rounds)
        start = [c for _, c in fresh]
        if extra:
            start, _ = refine_crops(
                self._landmarks_of,
                [frame.image] * len(start),
                start,
                self.detector.predictor.face_size,
                extra,
                self.detector.config.data.margin,
            )
        states = {}
        order = []
        for (lid, _), c in zip(fresh, start, strict=True):
            key = lid if lid is not None else -1 - len(order)  # provisional keys for new faces
            states[key] = _State(c, frame.index)
            order.append(key)
        return order, states

    def _run(self, frames: list[Frame], states: dict[int, _State], fresh: set[int]) -> list[FrameResult]:
        """Predict every state on every frame (``rounds`` batched calls) and apply the lost rule in frame order;
        the results stop at the first frame where a face is lost (later frames are predicted again afterwards)."""
        keys = list(states)
        pairs = [(k, j) for j in range(len(frames)) for k in keys]
        start = [
            states[k].predicted(frames[j].index - states[k].last) if states[k].last >= 0 else states[k].crop
            for k, j in pairs
        ]
        crops, pts, preds, views = self._passes([frames[j].image for _, j in pairs], start)
        margin = self.detector.config.data.margin
        prev = {k: states[k].crop.side for k in keys}
        results: list[FrameResult] = []
        for j, frame in enumerate(frames):
            rows = range(j * len(keys), (j + 1) * len(keys))
            boxes = {i: _canonical(pts[i], None, margin) for i in rows}
            reasons = {
                i: self.cfg.lost_reason(pts[i], preds[i].scores, boxes[i], prev[pairs[i][0]], frame.image.size)
                for i in rows
            }
            # rule 4: two faces on one crop -- the one with the lower score is a duplicate
            good = sorted((i for i in rows if reasons[i] is None), key=lambda i: -float(np.mean(preds[i].scores)))
            for a, i in enumerate(good):
                if any(reasons[h] is None and iou(boxes[i], boxes[h]) > self.cfg.duplicate_iou for h in good[:a]):
                    reasons[i] = f"duplicate of another face (crop IoU > {self.cfg.duplicate_iou})"
            faces: list[TrackedFace] = []
            for i in rows:
                k, p = pairs[i][0], preds[i]
                if reasons[i] is None:
                    status = "detected" if (k in fresh and j == 0) else "tracked"
                    faces.append(TrackedFace(k, status, boxes[i], pts[i], p.scores, p.face, views[i]))  # type: ignore[arg-type]
                    prev[k] = boxes[i].side  # type: ignore[union-attr]
                else:
                    faces.append(TrackedFace(k, "lost", crops[i], None, p.scores, None, views[i], reasons[i]))
            results.append(FrameResult(frame.index, frame.time, frame.image, faces))
            if any(f.status == "lost" for f in faces):
                break
        return results

    def _commit(self, res: FrameResult, fresh: set[int]) -> FrameResult:
        """Give new faces their ids (a fresh face lost at once is a rejected detection), update the lost pool, the
        smoothers and the summaries."""
        kept = []
        for f in res.faces:
            if f.id < 0 or (f.id in fresh and f.id not in self._active):
                if f.status == "lost":
                    if f.id < 0:
                        self.stats["rejected_detections"] += 1
                    continue
                if f.id < 0:
                    f.id = self._new_id()
                self._lost.pop(f.id, None)
            kept.append(f)
        res.faces = kept
        for f in kept:
            s = self.summaries.setdefault(f.id, TrackSummary(f.id))
            if f.status == "lost":
                self._active.pop(f.id, None)
                self._lost[f.id] = (f.crop, res.time)
                s.lost_at.append(res.index)
                s.lost_reasons.append(f.reason or "")
                continue
            st = self._active.get(f.id)
            new = f.crop  # the canonical box of its landmarks
            if st is None:
                st = _State(new, res.index)
                if self.cfg.smooth is not None:
                    st.smoother = OneEuroFilter(self.cfg.smooth)
                self._active[f.id] = st
                s.segments.append([res.index, res.index])
            else:
                if st.last == res.index - 1:
                    step = (
                        new.x0 + new.side / 2 - st.crop.x0 - st.crop.side / 2,
                        new.y0 + new.side / 2 - st.crop.y0 - st.crop.side / 2,
                    )
                    st.velocity = tuple(0.5 * a + 0.5 * b for a, b in zip(st.velocity, step, strict=True))
                st.crop = new
            st.last = res.index
            s.segments[-1][1] = res.index
            s.frames += 1
            if st.smoother is not None:
                f.smoothed = st.smoother(f.landmarks, res.time, f.crop.side)
        for lid in [i for i, (_, t) in self._lost.items() if res.time - t > self.cfg.keep_lost_s]:
            del self._lost[lid]
        self.stats["frames"] += 1
        return res

    def __iter__(self) -> Iterator[FrameResult]:
        src = as_frames(self._frames, self.fps) if self.reader is None else iter(self._frames)
        buf: deque[Frame] = deque()
        need_detect = True
        last_detect = 0
        exhausted = False
        while True:
            while not exhausted and len(buf) < self.cfg.batch_frames:
                try:
                    buf.append(next(src))
                except StopIteration:
                    exhausted = True
            if not buf:
                return
            every = self.cfg.detect_every
            if need_detect or not self._active or (every and buf[0].index - last_detect >= every):
                frame = buf.popleft()
                order, fresh_states = self._detect(frame)
                last_detect = frame.index
                states = dict(self._active) | fresh_states
                if not states:
                    yield self._commit(FrameResult(frame.index, frame.time, frame.image, [], True), set())
                    continue
                results = self._run([frame], states, set(order))
                results[0].detected = True
                res = self._commit(results[0], set(order))
                need_detect = any(f.status == "lost" for f in res.faces)
                yield res
                continue
            n = len(buf)
            if any(s.last - s.start < 2 for s in self._active.values()):
                n = 1  # a new face has no velocity yet: its first frames are tracked one by one
            if every:
                n = min(n, max(1, every - (buf[0].index - last_detect)))
            batch = [buf[i] for i in range(n)]
            results = self._run(batch, dict(self._active), set())
            if len(results) > 1 and any(f.status == "lost" for f in results[-1].faces):
                # a loss after the first frame of a batch may come from the batch's older starting crop: those
                # frames are predicted again, starting from the frame before
                results.pop()
            for _ in range(len(results)):
                buf.popleft()
            for res in results:
                res = self._commit(res, set())
                need_detect = need_detect or any(f.status == "lost" for f in res.faces)
                yield res


def _canonical(points: np.ndarray, fallback: CropBox | None, margin: float) -> CropBox | None:
    """The canonical box of ``points``, or ``fallback`` when they span an empty box."""
    try:
        return canonical_box(points, margin)
    except ValueError:
        return fallback


# --- writing ----------------------------------------------------------------------------------------------------

CSV_COLUMNS = (
    ["frame", "time", "face_id", "status", "box_x0", "box_y0", "box_x1", "box_y1", "score"]
    + [f"{c}_{i}" for i in range(68) for c in ("x", "y")]
    + ["reason"]
)


def _r(v: float, nd: int = 3) -> float:
    return round(float(v), nd)


def face_record(f: TrackedFace) -> dict[str, Any]:
    """The JSON entry of one face on one frame (``landmarks_smoothed`` only when smoothing is on)."""
    rec: dict[str, Any] = {
        "id": f.id,
        "status": f.status,
        "box": [_r(v, 2) for v in f.box],
        "score": _r(f.score, 4),
        "landmarks": None if f.landmarks is None else [[_r(x), _r(y)] for x, y in f.landmarks],
        "scores": [_r(s, 4) for s in f.scores],
    }
    if f.smoothed is not None:
        rec["landmarks_smoothed"] = [[_r(x), _r(y)] for x, y in f.smoothed]
    if f.reason:
        rec["reason"] = f.reason
    return rec


def _csv_row(res: FrameResult, f: TrackedFace, points: np.ndarray | None) -> list[Any]:
    pts = [] if points is None else [_r(v) for v in np.asarray(points).reshape(-1)]
    pts += [""] * (136 - len(pts))
    box = [_r(v, 2) for v in f.box]
    return [res.index, _r(res.time, 6), f.id, f.status, *box, _r(f.score, 4), *pts, f.reason or ""]


def _part(path: Path) -> Path:
    """The temporary name beside ``path`` (same suffix, so that ffmpeg picks the same container)."""
    return path.with_name(f".{path.stem}.part{path.suffix}")


class ResultWriter:
    """Streams the results of a clip to JSON (and CSV) under temporary names and moves them into place when
    closed, so that the output path only ever holds a whole document: ``complete`` is false when the run was
    interrupted or stopped by an error (what was done is kept)."""

    def __init__(
        self, json_path: str | Path, header: dict[str, Any], csv_path: str | Path | None = None, smooth: bool = False
    ) -> None:
        self.paths: list[tuple[Path, Path]] = []
        self.json_path = Path(json_path)
        self._json = self._open(self.json_path)
        body = json.dumps(header, indent=1)[:-2]  # the header object, left open
        self._json.write(body + (",\n" if header else "\n") + ' "frames": [\n')
        self._first = True
        self._csv = self._csv_smooth = None
        if csv_path is not None:
            csv_path = Path(csv_path)
            self._csv = csv.writer(self._open(csv_path))
            self._csv.writerow(CSV_COLUMNS)
            if smooth:
                self.smooth_csv_path = csv_path.with_name(f"{csv_path.stem}_smoothed{csv_path.suffix}")
                self._csv_smooth = csv.writer(self._open(self.smooth_csv_path))
                self._csv_smooth.writerow(CSV_COLUMNS)
        self.frames = 0

    def _open(self, path: Path):  # noqa: ANN202 - a text file
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _part(path)
        fh = tmp.open("w", newline="")
        self.paths.append((tmp, path))
        self._files = [*getattr(self, "_files", []), fh]
        return fh

    def write(self, res: FrameResult, extra: dict[int, dict[str, Any]] | None = None) -> None:
        faces = []
        for f in res.faces:
            rec = face_record(f)
            rec.update((extra or {}).get(f.id, {}))
            faces.append(rec)
        entry = {"frame": res.index, "time": _r(res.time, 6), "detected": res.detected, "faces": faces}
        self._json.write(("" if self._first else ",\n") + "  " + json.dumps(entry, separators=(",", ":")))
        self._first = False
        for f in res.faces:
            if self._csv is not None:
                self._csv.writerow(_csv_row(res, f, f.landmarks))
            if self._csv_smooth is not None:
                self._csv_smooth.writerow(_csv_row(res, f, f.smoothed))
        self.frames += 1

    def close(self, footer: dict[str, Any]) -> None:
        tail = json.dumps(footer, indent=1)[1:].lstrip("\n")
        self._json.write("\n ],\n" + tail + "\n")
        for fh in self._files:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        for tmp, path in self.paths:
            os.replace(tmp, path)

    def discard(self) -> None:
        """Remove the temporary files (nothing was worth keeping)."""
        for fh in self._files:
            fh.close()
        for tmp, _ in self.paths:
            tmp.unlink(missing_ok=True)


class Mp4Writer:
    """An H.264 video written through imageio-ffmpeg under a temporary name, moved into place when closed (odd
    frame sizes are padded to even ones)."""

    def __init__(self, path: str | Path, size: tuple[int, int], fps: float) -> None:
        import imageio_ffmpeg

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _part(self.path)
        self.size = (size[0] + size[0] % 2, size[1] + size[1] % 2)
        self._w = imageio_ffmpeg.write_frames(
            str(self.tmp), self.size, fps=fps, macro_block_size=2, ffmpeg_log_level="error"
        )
        self._w.send(None)
        self.frames = 0

    def add(self, img: Image.Image) -> None:
        if img.size != self.size:
            canvas = Image.new("RGB", self.size)
            canvas.paste(img, (0, 0))
            img = canvas
        self._w.send(np.ascontiguousarray(np.asarray(img.convert("RGB"))))
        self.frames += 1

    def close(self) -> Path | None:
        self._w.close()
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.path)
        return self.path


_COLOURS = {"detected": (255, 210, 0), "tracked": (0, 255, 0), "lost": (255, 40, 40)}


def overlay_frame(res: FrameResult, min_side: int = 256) -> Image.Image:
    """The frame (enlarged by a whole factor, nearest, to at least ``min_side`` px) with each face's crop box, id
    and landmarks (the smoothed ones when present): yellow where the face detector found it, green where tracked,
    red where lost."""
    img = res.image
    k = max(1, math.ceil(min_side / max(1, min(img.size))))
    big = img.resize((img.size[0] * k, img.size[1] * k), Image.Resampling.NEAREST) if k > 1 else img.copy()
    for f in res.faces:
        pts = f.smoothed if f.smoothed is not None else f.landmarks
        if pts is not None:
            big = draw_landmarks(big, np.asarray(pts) * k, _COLOURS[f.status], radius=max(1.0, f.crop.side * k / 90))
    d = ImageDraw.Draw(big)
    for f in res.faces:
        x0, y0, x1, y1 = (v * k for v in f.box)
        d.rectangle([x0, y0, x1, y1], outline=_COLOURS[f.status], width=max(1, round(big.size[0] / 400)))
        d.text(
            (x0 + 2, max(0.0, y0 - 12)), f"{f.id}" + (" lost" if f.status == "lost" else ""), fill=_COLOURS[f.status]
        )
    return big


class FaceVideo:
    """``LR crop | hallucinated face`` of one face id, from its first frame to the end of the clip (grey where the
    face is lost or absent). ``face_id`` None: the first face that appears."""

    def __init__(self, path: str | Path, fps: float, tile: int, face_id: int | None = None) -> None:
        self.path, self.fps, self.tile, self.face_id = Path(path), fps, tile, face_id
        self._w: Mp4Writer | None = None

    def add(self, res: FrameResult) -> None:
        if self.face_id is None:
            found = [f.id for f in res.faces if f.status != "lost"]
            if not found:
                return
            self.face_id = min(found)
        face = next((f for f in res.faces if f.id == self.face_id and f.status != "lost"), None)
        if face is None and self._w is None:
            return
        t = self.tile
        out = Image.new("RGB", (2 * t + 4, t), (255, 255, 255))
        grey = Image.new("RGB", (t, t), (128, 128, 128))
        lr = face.view.resize((t, t), Image.Resampling.NEAREST) if face is not None and face.view else grey
        hal = face.face.resize((t, t), Image.Resampling.BICUBIC) if face is not None and face.face else grey
        out.paste(lr, (0, 0))
        out.paste(hal, (t + 4, 0))
        if self._w is None:
            self._w = Mp4Writer(self.path, out.size, self.fps)
        self._w.add(out)

    def close(self) -> Path | None:
        return self._w.close() if self._w is not None else None


def run_video(
    track: Track,
    out: str | Path,
    header: dict[str, Any],
    csv_path: str | Path | None = None,
    overlay: str | Path | None = None,
    face_video: str | Path | None = None,
    face_id: int | None = None,
    faces_dir: str | Path | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Run ``track`` to the end (or to Ctrl-C) and write its results: JSON (always), CSV (and ``_smoothed`` CSV
    when smoothing is on), an overlay video, the ``LR | hallucinated`` video of one face and every hallucinated
    face as PNG. Returns the JSON footer (``complete``, ``interrupted``, ``stats``, ``tracks``, ``problems``, and
    the files written under ``outputs``). ``progress`` None: a tqdm bar on a terminal only."""
    from tqdm.auto import tqdm

    smooth = track.cfg.smooth is not None
    writer = ResultWriter(out, header, csv_path, smooth)
    fps = track.fps
    ov: Mp4Writer | None = None
    fv = FaceVideo(face_video, fps, track.detector.predictor.face_size, face_id) if face_video else None
    faces = Path(faces_dir) if faces_dir else None
    if faces is not None:
        faces.mkdir(parents=True, exist_ok=True)
    total = track.info.frames if track.info is not None else None
    interrupted, error = False, None
    bar = tqdm(total=total, unit="frame", desc="sht detect", disable=(not progress) if progress is not None else None)
    try:
        for res in track:
            extra: dict[int, dict[str, Any]] = {}
            if faces is not None:
                for f in res.faces:
                    if f.face is not None:
                        fp = faces / f"f{res.index:06d}_id{f.id}.png"
                        f.face.save(fp)
                        extra[f.id] = {"face": str(fp)}
            writer.write(res, extra)
            if overlay is not None:
                panel = overlay_frame(res)
                if ov is None:
                    ov = Mp4Writer(overlay, panel.size, fps)
                ov.add(panel)
            if fv is not None:
                fv.add(res)
            bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    except Exception as exc:
        if writer.frames == 0:
            bar.close()
            writer.discard()
            for w in (ov, fv):
                if w is not None:
                    w.close()
            raise
        error = exc
    bar.close()
    written = {"json": str(Path(out))}
    if csv_path is not None:
        written["csv"] = str(csv_path)
        if smooth:
            written["csv_smoothed"] = str(writer.smooth_csv_path)
    for key, w in (("overlay", ov), ("face_video", fv)):
        p = w.close() if w is not None else None
        if p is not None:
            written[key] = str(p)
    footer = {
        "complete": not interrupted and error is None,
        "interrupted": interrupted,
        "error": None if error is None else f"{type(error).__name__}: {error}",
        "problems": list(track.problems),
        "stats": dict(track.stats),
        "tracks": {str(k): asdict(v) for k, v in sorted(track.summaries.items())},
        "outputs": written,
    }
    writer.close(footer)
    if error is not None:
        raise error
    return footer
