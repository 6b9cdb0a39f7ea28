"""Video benchmark of ``Detector.track`` with the release weights: jitter, agreement with full resolution, speed.

Parts (each a list of units, saved to the results JSON as soon as it finishes, so that a run resumes):

- ``score``: the lost rule's confidence threshold (``sht.video``, rule 1): heatmap-peak scores of canonical crops of
  Helen-train and YTF68-train faces (training data, never the benchmark clips) at 16 and 32 px, against crops off
  the face (shifted, an image corner, 60 % outside the image, twice or half the size).
- ``static``: a still face repeated as frames, each with independent sensor noise (Gaussian, sigma 3/255) and JPEG
  compression (quality 75), the face 16, 32 and 64 px (canonical crop side); generated faces and Helen test faces.
  Jitter = mean distance of each landmark to its mean position over the frames / inter-ocular distance (a perfect
  model scores 0); also the second-difference jitter and the bias of the mean position against the truth.
- ``clips``: the talking-head clips of ``--data/videos`` downscaled (PIL bicubic, antialiased) so that the face is
  16, 24 and 32 px. Reference = the same model tracking the full-resolution frames. Per clip x size x method:
  jitter (second difference of each track, ``|p[t+1] - 2 p[t] + p[t-1]|`` / inter-ocular), agreement with the
  reference (NME, inter-ocular of the reference), coverage (frames with landmarks where the reference has them),
  face-detector calls, frames/s on this machine (1 thread). Methods that cover different frames are also compared
  on the frames both cover (tracking keeps faces photo mode loses, and those frames are the hard ones).

Methods: ``track`` (``Detector.track`` with its defaults: raw landmarks and One-Euro smoothed ones, the filter's
default parameters, from the same run; a second pass only where the crop moved more than ``settle``),
``track-faces`` (the same, also making every frame's hallucinated face: ``--save-faces``), ``track-2pass``
(``settle=None``: two passes on every frame), ``track-1pass`` (``rounds=1``: one network pass per frame, the crop from
the previous landmarks only), ``per-frame`` (photo mode on every frame: ``Detector.detect_many`` in chunks of 8
frames, 3 network passes per face) and ``dlib``
(dlib's 68-point shape predictor on every frame; its own HOG face detector is run too, and how often it finds the
face is reported). All sht methods but ``track-faces`` compute landmarks only (``TrackConfig.faces=False``,
``detect_many(face=False)``), as ``sht detect clip.mp4 --out clip.json`` does without ``--save-faces``. Face
boxes: OpenCV's Haar cascade cannot find faces below ~20 px, so every method gets the box of
the Haar detection on the *full-resolution* frame, scaled down (static part: the box that gives the true canonical
crop). Its time is measured once per frame on the full-resolution frame and added to the methods that call it
(``track`` only on its first frame and after a loss, ``per-frame`` on every frame). With ``--boxes sht`` the
talking heads' boxes come from sht's own face detector on the downscaled frames themselves (part ``clip-sht``,
its time counted the same way): what a user without the full-resolution video gets.

    python benchmarks/video.py                 # all parts; resumable; rewrites the video block of RESULTS.md
    python benchmarks/video.py --dry-run       # one clip, a few frames, every path; results under --work/dry
    python benchmarks/video.py --only clips --boxes sht   # talking heads with sht's face detector's boxes
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_block import update_block

import sht
from sht.data.formats import read_pts
from sht.data.synthetic import SyntheticFaceConfig, generate
from sht.data.transforms import CropBox, canonical_box, crop_image
from sht.faces import (
    DLIB_CALIBRATION,
    FACE_DETECTOR_WEIGHTS,
    HAAR_CALIBRATION,
    BoxCalibration,
    FaceBox,
    HaarFaceDetector,
)
from sht.infer import release_members
from sht.report import markdown_table
from sht.video import Frame, OneEuroConfig, TrackConfig, VideoReader

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SCORE_SIZES = (16, 32, 64)  # crop sides for the lost rule's scores: one per release member
STATIC_SIZES = (16, 32, 64)
CLIP_SIZES = (16, 24, 32)
SMOOTH = OneEuroConfig()  # the defaults: nothing is tuned on these clips
REF_TRACK = TrackConfig(faces=False)  # the full-resolution reference: the tracker's defaults, landmarks only
TRACKER = 3  # the version of the tracking rules (2: periodic detection challenges the tracks; 3: a box on the
# track confirms it without a challenge)


# --- small helpers -------------------------------------------------------------------------------------------------


def iod(pts: np.ndarray) -> float:
    """Inter-ocular distance (outer eye corners 36, 45)."""
    return float(np.linalg.norm(pts[36] - pts[45]))


def box_for_crop(crop: CropBox, cal: BoxCalibration) -> FaceBox:
    """The detector box that ``cal`` turns into ``crop`` (square box: the inverse of ``BoxCalibration.to_crop``)."""
    w = crop.side / cal.scale
    cx = crop.x0 + crop.side / 2 - cal.dx * w
    cy = crop.y0 + crop.side / 2 - cal.dy * w
    return FaceBox(cx - w / 2, cy - w / 2, cx + w / 2, cy + w / 2)


class GivenBoxes:
    """A face detector that answers with known boxes per frame (``img.info['frame']``), Haar-calibrated, and adds
    the measured full-resolution Haar time of that frame to ``seconds``."""

    calibration = HAAR_CALIBRATION

    def __init__(self, boxes: list[list[FaceBox]], seconds: list[float]) -> None:
        self.boxes, self.times, self.seconds, self.calls = boxes, seconds, 0.0, 0

    def __call__(self, img: Image.Image) -> list[FaceBox]:
        t = img.info["frame"]
        self.seconds += self.times[t]
        self.calls += 1
        return list(self.boxes[t])


def frame(t: int, img: Image.Image, fps: float) -> Frame:
    img.info["frame"] = t
    return Frame(t, t / fps, img)


_NUMBERS = re.compile(r"\[\s*([-+\d.eE,\snul]*?)\s*\]")


def save_json(path: Path, doc: dict) -> None:
    """Indented JSON with each list of numbers on one line (the per-frame errors would take a line per frame)."""
    text = _NUMBERS.sub(
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", json.dumps(doc, indent=1)
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def release_id() -> list[str]:
    """The release family the units are measured with: each member's file, content hash, crop sizes and flip test."""
    return [
        f"{p.name}:{hashlib.sha1(p.read_bytes()).hexdigest()[:12]}:{mx}:{'flip' if flip else 'plain'}"
        for p, mx, flip in release_members()
    ]


class Units:
    """The results file: one entry per finished unit, written after each. With ``model`` (the release family the
    units are measured with), a file measured with other weights is refused, never mixed in; without it (the face
    detector's benchmarks, whose units carry their own weights' hash) the file is taken as it is."""

    def __init__(self, path: Path, model: list[str] | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.doc = json.loads(path.read_text()) if path.exists() else {"units": {}}
        if model is None:
            return
        if self.doc.get("model") != model and self.doc["units"]:
            sys.exit(
                f"benchmarks/video.py: {path} holds units measured with other release weights "
                f"({self.doc.get('model', 'not recorded')}); move it aside (or pass --results) to measure this release"
            )
        self.doc["model"] = model

    def __contains__(self, key: str) -> bool:
        return key in self.doc["units"]

    def __getitem__(self, key: str) -> dict:
        return self.doc["units"][key]

    def put(self, key: str, value: dict) -> None:
        self.doc["units"][key] = value
        save_json(self.path, self.doc)
        print(f"  done {key}: " + ", ".join(f"{k}={v}" for k, v in value.items() if not isinstance(v, list | dict)))


# --- metrics -------------------------------------------------------------------------------------------------------


def jitter_to_mean(series: np.ndarray, norm: float) -> float:
    """Mean distance of each landmark to its mean position over the frames / ``norm`` ((T, 68, 2), no NaN)."""
    return float(np.linalg.norm(series - series.mean(0), axis=-1).mean() / norm)


def second_difference(series: np.ndarray, norms: np.ndarray) -> tuple[float, int]:
    """Mean ``|p[t+1] - 2 p[t] + p[t-1]|`` / ``norms[t]`` over the frames whose neighbours are on the same track
    (NaN rows break a track); returns the mean and how many frames count."""
    a = series[2:] - 2 * series[1:-1] + series[:-2]
    d = np.linalg.norm(a, axis=-1).mean(-1) / norms[1:-1]
    ok = np.isfinite(d)
    return (float(d[ok].mean()) if ok.any() else float("nan")), int(ok.sum())


def agreement(series: np.ndarray, ref: np.ndarray, norms: np.ndarray) -> tuple[float, float]:
    """NME against the reference where both exist, and the coverage (frames with landmarks where the reference
    has them)."""
    has_ref = np.isfinite(ref).all((1, 2))
    both = has_ref & np.isfinite(series).all((1, 2))
    e = np.linalg.norm(series[both] - ref[both], axis=-1).mean(-1) / norms[both]
    return (float(e.mean()) if both.any() else float("nan")), float(both.sum() / max(1, has_ref.sum()))


def frame_errors(series: np.ndarray, ref: np.ndarray, norms: np.ndarray) -> list[float | None]:
    """Each frame's NME against the reference (None where either has no landmarks), for comparisons on the frames
    two methods both cover."""
    e = np.linalg.norm(series - ref, axis=-1).mean(-1) / norms
    return [round(float(v), 4) if np.isfinite(v) else None for v in e]


def common_agreement(a: list[dict], b: list[dict]) -> tuple[float, float, int]:
    """Mean NME of two methods' units (the same clips, in order) on the frames where both have landmarks (and
    the reference has), and how many frames that is."""
    ea, eb = [], []
    for ua, ub in zip(a, b, strict=True):
        for x, y in zip(ua["raw_errors"], ub["raw_errors"], strict=True):
            if x is not None and y is not None:
                ea.append(x)
                eb.append(y)
    return (float(np.mean(ea)) if ea else float("nan")), (float(np.mean(eb)) if eb else float("nan")), len(ea)


def nearest(faces: list[tuple[int | None, np.ndarray]], target: np.ndarray, limit: float):  # noqa: ANN201
    """The face whose landmark centre is nearest to ``target``'s, within ``limit`` px (or None)."""
    if not faces or not np.isfinite(target).all():
        return None
    c = target.mean(0)
    best = min(faces, key=lambda f: float(np.linalg.norm(f[1].mean(0) - c)))
    return best if np.linalg.norm(best[1].mean(0) - c) < limit else None


# --- methods ---------------------------------------------------------------------------------------------------------


def run_track(
    det,
    frames: list[Frame],
    fd: GivenBoxes,
    ref: np.ndarray,
    limit: np.ndarray,
    rounds: int = 2,
    settle="default",
    faces: bool = False,
) -> dict:
    """``Detector.track`` with smoothing on: per frame the raw and smoothed landmarks of the face matching the
    reference (a track is broken where the id changes). ``faces``: also make the hallucinated faces (off: landmarks
    only, as ``sht detect clip.mp4 --out clip.json`` runs without ``--save-faces``)."""
    t0 = time.perf_counter()
    cfg = TrackConfig(rounds=rounds, smooth=SMOOTH, faces=faces)
    if settle != "default":
        cfg.settle = settle
    track = det.track(frames, cfg, face_detector=fd)
    raw = np.full((len(frames), 68, 2), np.nan)
    smooth = raw.copy()
    last_id = None
    for res in track:
        cand = [(f.id, f.landmarks, f.smoothed) for f in res.faces if f.landmarks is not None]
        hit = nearest([(i, lm) for i, lm, _ in cand], ref[res.index], limit[res.index])
        if hit is not None:
            if last_id is not None and hit[0] != last_id and res.index > 0:
                raw[res.index - 1] = smooth[res.index - 1] = np.nan  # an id switch breaks the track
            last_id = hit[0]
            raw[res.index] = hit[1]
            smooth[res.index] = next(s for i, _, s in cand if i == hit[0])
    wall = time.perf_counter() - t0
    return {"raw": raw, "smooth": smooth, "seconds": wall + fd.seconds, "landmark_seconds": wall, **track.stats}


def run_per_frame(det, frames: list[Frame], boxes: list[list[FaceBox]], seconds: list[float], ref, limit) -> dict:
    """Photo mode on every frame with the frame's face boxes, 8 frames per batch, landmarks only (as tracking)."""
    out = np.full((len(frames), 68, 2), np.nan)
    t0 = time.perf_counter()
    for i in range(0, len(frames), 8):
        chunk = frames[i : i + 8]
        given = [[b[:4] for b in _xyxy(boxes[f.index])] for f in chunk]
        got = det.detect_many([f.image for f in chunk], given, face=False)
        for f, faces in zip(chunk, got, strict=True):
            hit = nearest([(None, g.landmarks) for g in faces], ref[f.index], limit[f.index])
            if hit is not None:
                out[f.index] = hit[1]
    wall = time.perf_counter() - t0
    return {"raw": out, "seconds": wall + sum(seconds), "landmark_seconds": wall, "detector_calls": len(frames)}


def _xyxy(boxes: list[FaceBox]) -> list[list[float]]:
    return [[b.x0, b.y0, b.x1, b.y1] for b in boxes]


class Dlib:
    """dlib's shape predictor on a given (Haar-derived) box, and its own HOG detector for the detection rate."""

    def __init__(self) -> None:
        from sht.teacher import DlibTeacher

        self.teacher = DlibTeacher()

    def run(self, frames: list[Frame], crops: list[CropBox | None], detector_seconds: float = 0.0) -> dict:
        """Shape predictor on each frame's crop (timed, plus ``detector_seconds`` for the boxes); the HOG detector
        is run apart (not timed) for its detection rate."""
        out = np.full((len(frames), 68, 2), np.nan)
        found, wall = 0, 0.0
        for f in frames:
            arr = np.ascontiguousarray(np.asarray(f.image.convert("RGB")))
            found += len(self.teacher.detector(arr, self.teacher.upsample)) > 0
            c = crops[f.index]
            if c is None:
                continue
            t0 = time.perf_counter()
            b = box_for_crop(c, DLIB_CALIBRATION)
            out[f.index] = self.teacher.points_in(arr, self.teacher.rect(b.x0, b.y0, b.x1, b.y1))
            wall += time.perf_counter() - t0
        return {
            "raw": out,
            "seconds": wall + detector_seconds,
            "landmark_seconds": wall,
            "hog_found": found / max(1, len(frames)),
        }


METHODS = ("track", "track-faces", "track-2pass", "track-1pass", "per-frame", "dlib")
ERROR_METHODS = ("track", "track-2pass", "per-frame")  # their units keep each frame's error (common-frame agreement)
LABELS = {
    "track": "tracked",
    "track-faces": "tracked, with the hallucinated faces",
    "track-2pass": "tracked, 2 passes per frame (settle off)",
    "track-1pass": "tracked, 1 pass per frame",
    "per-frame": "photo mode per frame",
    "dlib": "dlib per frame",
}


def run_method(m: str, det, dl: Dlib | None, frames, boxes, secs, crops, ref, limit) -> dict:  # noqa: ANN001
    """One method on the frames: ``boxes``/``secs`` the face detector's answers and times per frame, ``crops`` the
    canonical crops they give (for dlib)."""
    if m == "track":
        return run_track(det, frames, GivenBoxes(boxes, secs), ref, limit)
    if m == "track-faces":
        return run_track(det, frames, GivenBoxes(boxes, secs), ref, limit, faces=True)
    if m == "track-1pass":
        return run_track(det, frames, GivenBoxes(boxes, secs), ref, limit, rounds=1)
    if m == "track-2pass":
        return run_track(det, frames, GivenBoxes(boxes, secs), ref, limit, settle=None)
    if m == "per-frame":
        return run_per_frame(det, frames, boxes, secs, ref, limit)
    assert dl is not None
    return dl.run(frames, crops, sum(secs))


def methods_for(dl: Dlib | None) -> list[str]:
    return [m for m in METHODS if m != "dlib" or dl is not None]


# --- part 1: the lost rule's threshold ----------------------------------------------------------------------------


def part_score(args, det, units: Units) -> None:
    key = "score"
    if key in units:
        return
    data = Path(args.data)
    files = sorted((data / "300w/helen/trainset").glob("*.jpg"))[: args.score_faces]
    files += sorted((data / "ytf68/train").glob("*.jpg"))[: args.score_faces : 2]
    rows: dict[str, list[float]] = {}
    for f in files:
        img = Image.open(f).convert("RGB")
        pts = read_pts(f.with_suffix(".pts"))
        c = canonical_box(pts, 1.3)
        w, _ = img.size
        variants = {
            "face": c,
            "shifted 1/4 side": CropBox(c.x0 + 0.25 * c.side, c.y0, c.side),
            "shifted 1/2 side": CropBox(c.x0 + 0.5 * c.side, c.y0 + 0.2 * c.side, c.side),
            "twice the size": c.expand(2.0),
            "half the size": c.expand(0.5),
            "image corner": CropBox(0, 0, w / 4),
            "60% outside the image": CropBox(w - 0.4 * c.side, c.y0, c.side),
        }
        for n in SCORE_SIZES:
            preds = det.predictor.predict([crop_image(img, b, n) for b in variants.values()])
            for name, p in zip(variants, preds, strict=True):
                rows.setdefault(name, []).append(float(p.scores.mean()))
    units.put(
        key,
        {
            "faces": len(files),
            "sizes": list(SCORE_SIZES),
            "crops": {
                k: {f"p{q}": round(float(np.percentile(v, q)), 3) for q in (0, 1, 10, 50, 90, 100)} | {"n": len(v)}
                for k, v in rows.items()
            },
        },
    )


# --- part 2: a still face ------------------------------------------------------------------------------------------


def still_faces(args) -> list[tuple[str, Image.Image, np.ndarray]]:
    out = [
        (f"generated{i}", img, pts)
        for i, (img, pts) in enumerate(generate(args.static_faces, seed=11, cfg=SyntheticFaceConfig(image_size=256)))
    ]
    helen = sorted((Path(args.data) / "300w/helen/testset").glob("*.jpg"))[: args.static_faces]
    out += [(f"helen-test/{p.stem}", Image.open(p).convert("RGB"), read_pts(p.with_suffix(".pts"))) for p in helen]
    return out


def noisy(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Independent sensor noise (Gaussian, sigma 3/255) and JPEG compression (quality 75)."""
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, 3, (img.size[1], img.size[0], 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=75)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def part_static(args, det, dl: Dlib | None, units: Units) -> None:
    for name, img, pts in still_faces(args):
        for size in args.static_sizes:
            keys = {m: f"static|{name}|{size}|{m}" for m in methods_for(dl)}
            if all(k in units for k in keys.values()):
                continue
            scale = size / canonical_box(pts, 1.3).side
            small = img.resize(
                (max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.Resampling.BICUBIC
            )
            sx, sy = small.size[0] / img.size[0], small.size[1] / img.size[1]
            gt = pts * [sx, sy]
            norm = iod(gt)
            rng = np.random.default_rng(size)
            frames = [frame(t, noisy(small, rng), 25.0) for t in range(args.static_frames)]
            crop = canonical_box(gt, 1.3)
            boxes = [[box_for_crop(crop, HAAR_CALIBRATION)]] * len(frames)
            ref = np.repeat(gt[None], len(frames), 0)
            limit = np.full(len(frames), crop.side)
            zero = [0.0] * len(frames)
            for m, key in keys.items():
                if key in units:
                    continue
                r = run_method(m, det, dl, frames, boxes, zero, [crop] * len(frames), ref, limit)
                series = {"raw": r["raw"]} | ({"smoothed": r["smooth"]} if "smooth" in r else {})
                out: dict = {"frames": len(frames), "face": name, "size": size}
                for s, arr in series.items():
                    ok = np.isfinite(arr).all((1, 2))
                    out[f"{s}_found"] = round(float(ok.mean()), 3)
                    if ok.sum() >= 3:
                        out[f"{s}_jitter"] = round(jitter_to_mean(arr[ok], norm), 5)
                        out[f"{s}_jitter_d2"] = round(second_difference(arr, np.full(len(arr), norm))[0], 5)
                        out[f"{s}_bias"] = round(float(np.linalg.norm(arr[ok].mean(0) - gt, axis=-1).mean() / norm), 5)
                if "hog_found" in r:
                    out["hog_found"] = round(r["hog_found"], 3)
                units.put(keys[m], out)


# --- part 3: talking heads -----------------------------------------------------------------------------------------


def reference(args, det, clip: Path, work: Path) -> Path:
    """The full-resolution pass of a clip (cached per release family): the main face's landmarks per frame (the id
    seen on most frames), every frame's Haar boxes and Haar time, and the downscaled frames for every size. Two
    streamed passes over the file (track + Haar, then downscale), so that no clip is held in memory at full
    resolution."""
    # the release family and the tracker (its settings and TRACKER, the version of its rules) that made it
    made_by = [release_id(), asdict(REF_TRACK), TRACKER]
    rid = hashlib.sha1(json.dumps(made_by).encode()).hexdigest()[:12]
    out = work / f"ref_{clip.stem}_{rid}{f'_first{args.max_frames}' if args.max_frames else ''}.npz"
    if out.exists():
        return out
    haar = HaarFaceDetector()
    boxes: list[list[list[float]]] = []
    secs: list[float] = []

    def stream():  # noqa: ANN202
        reader = VideoReader(clip)
        for f in reader:
            if args.max_frames and f.index >= args.max_frames:
                return
            t = time.perf_counter()
            boxes.append(_xyxy(haar(f.image)))
            secs.append(time.perf_counter() - t)
            yield f

    per_id: dict[int, dict[int, np.ndarray]] = {}
    t0 = time.perf_counter()
    for res in det.track(stream(), REF_TRACK):
        for g in res.faces:
            if g.landmarks is not None:
                per_id.setdefault(g.id, {})[res.index] = g.landmarks
    ref_seconds = time.perf_counter() - t0 - sum(secs)
    n = len(boxes)
    main = np.full((n, 68, 2), np.nan)
    if per_id:
        for t, lm in max(per_id.values(), key=len).items():
            main[t] = lm
    ok = np.isfinite(main).all((1, 2))
    side = float(np.median([canonical_box(p, 1.3).side for p in main[ok]])) if ok.any() else float("nan")
    arrays: dict[str, np.ndarray] = {
        "ref": main,
        "haar_seconds": np.asarray(secs),
        "haar_boxes": np.array(json.dumps(boxes)),
        "side": np.array(side),
        "fps": np.array(VideoReader(clip).info.fps),
        "ref_seconds": np.array(ref_seconds),
    }
    if ok.any():
        small: dict[int, list[np.ndarray]] = {size: [] for size in args.clip_sizes}
        for f in VideoReader(clip):
            if f.index >= n:
                break
            w, h = f.image.size
            for size in args.clip_sizes:
                k = size / side
                sw, sh = max(1, round(w * k)), max(1, round(h * k))
                small[size].append(np.asarray(f.image.resize((sw, sh), Image.Resampling.BICUBIC)))
                arrays[f"scale{size}"] = np.array([sw / w, sh / h])
        for size, frames in small.items():
            arrays[f"frames{size}"] = np.stack(frames)
    np.savez_compressed(out, **arrays)
    return out


def sht_boxes(args, clip: Path, size: int, frames: list[Frame], work: Path) -> tuple[list[list[FaceBox]], list[float]]:
    """sht's face detector on every downscaled frame (cached per clip, size, weights, border and frames): its
    boxes, turned into the Haar boxes of the same canonical crops (so every method reads them as it reads Haar's),
    and its time."""
    from sht.faces import ShtFaceDetector
    from sht.models.face_detector import DetectSettings

    d = DetectSettings()  # the small-frame border changes what is found on small frames
    wid = hashlib.sha1(Path(args.sht_weights).read_bytes()).hexdigest()[:12] + f"-border{d.border}-{d.border_max_side}"
    pixels = hashlib.sha1(b"".join(np.asarray(f.image).tobytes() for f in frames)).hexdigest()[:8]  # these frames
    out = work / f"sht_boxes_{clip.stem}_{size}_{wid}_{pixels}.json"
    if not out.exists():
        fd = ShtFaceDetector(args.sht_weights)
        boxes, secs = [], []
        for f in frames:
            t = time.perf_counter()
            found = fd(f.image)
            secs.append(time.perf_counter() - t)
            boxes.append(_xyxy([box_for_crop(fd.calibration.to_crop(b), HAAR_CALIBRATION) for b in found]))
        save_json(out, {"boxes": boxes, "seconds": secs})
    doc = json.loads(out.read_text())
    return [[FaceBox(*b) for b in bs] for bs in doc["boxes"]], doc["seconds"]


def part_clips(args, det, dl: Dlib | None, units: Units, work: Path) -> None:
    """Face boxes for every method: ``--boxes haar-full`` (the Haar detection on the full-resolution frame, scaled
    down) or ``sht`` (sht's face detector on the downscaled frame itself: part ``clip-sht``)."""
    clips = sorted(Path(args.data, "videos").glob("*.mp4"))
    if args.clips:
        clips = [c for c in clips if c.stem in args.clips]
    part = ("clip" if args.boxes == "haar-full" else "clip-sht") + ("-onnx" if args.backend == "onnx" else "")
    for clip in clips:
        methods = [m for m in methods_for(dl) if not args.methods or m in args.methods]
        keys = {(s, m): f"{part}|{clip.stem}|{s}|{m}" for s in args.clip_sizes for m in methods}
        if all(k in units for k in keys.values()):
            continue
        print(f"{clip.name}: full-resolution reference")
        z = np.load(reference(args, det, clip, work))
        if not np.isfinite(float(z["side"])):
            for k in keys.values():
                units.put(k, {"frames": int(len(z["ref"])), "skipped": "no face at full resolution"})
            continue
        fps = float(z["fps"])
        boxes_full = json.loads(str(z["haar_boxes"]))
        for size in args.clip_sizes:
            sx, sy = z[f"scale{size}"]
            ref = z["ref"] * [sx, sy]
            ok = np.isfinite(ref).all((1, 2))
            norms = np.array([iod(p) if o else np.nan for p, o in zip(ref, ok, strict=True)])
            limit = np.array([canonical_box(p, 1.3).side / 2 if o else 0.0 for p, o in zip(ref, ok, strict=True)])
            frames = [frame(t, Image.fromarray(a), fps) for t, a in enumerate(z[f"frames{size}"])]
            if args.boxes == "sht":
                boxes, secs = sht_boxes(args, clip, size, frames, work)
            else:
                boxes = [[FaceBox(b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy) for b in bs] for bs in boxes_full]
                secs = list(map(float, z["haar_seconds"]))
            for m in methods:
                key = keys[(size, m)]
                if key in units:
                    continue
                crops = [HAAR_CALIBRATION.to_crop(bs[0]) if bs else None for bs in boxes]
                r = run_method(m, det, dl, frames, boxes, secs, crops, ref, limit)
                out: dict = {
                    "frames": len(frames),
                    "fps": round(len(frames) / r["seconds"], 2),
                    "landmark_fps": round(len(frames) / max(r["landmark_seconds"], 1e-9), 2),
                }
                out["frame_size"] = list(frames[0].image.size)
                out["detector_found"] = round(float(np.mean([len(b) > 0 for b in boxes])), 4)
                series = {"raw": r["raw"]} | ({"smoothed": r["smooth"]} if "smooth" in r else {})
                for s, arr in series.items():
                    j, nj = second_difference(arr, norms)
                    a, cov = agreement(arr, ref, norms)
                    out |= {
                        f"{s}_jitter_d2": round(j, 5),
                        f"{s}_agreement": round(a, 5),
                        f"{s}_coverage": round(cov, 4),
                    }
                    out[f"{s}_jitter_frames"] = nj
                if m in ERROR_METHODS:
                    out["raw_errors"] = frame_errors(r["raw"], ref, norms)
                for k in ("detector_calls", "network_calls", "crops", "hog_found"):
                    if k in r:
                        out[k] = r[k] if k != "hog_found" else round(r[k], 3)
                units.put(key, out)


# --- the table -------------------------------------------------------------------------------------------------------


def pct(v: float | None, digits: int = 2) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.{digits}f}"


def mean_of(rows: list[dict], key: str, weight: str | None = None) -> float | None:
    vals = [(r[key], r.get(weight, 1) if weight else 1) for r in rows if key in r and np.isfinite(r[key])]
    if not vals:
        return None
    v, w = np.array(vals, dtype=np.float64).T
    return float((v * w).sum() / w.sum())


ROWS = (
    ("track", "raw"),
    ("track", "smoothed"),
    ("track-faces", "raw"),
    ("track-2pass", "raw"),
    ("track-1pass", "raw"),
    ("per-frame", "raw"),
    ("dlib", "raw"),
)


def table_rows(u: dict, part: str, sizes: tuple[int, ...]):  # noqa: ANN201
    """``(size, method, series, label, units)`` for every row of a part's table that has results."""
    for size in sizes:
        for m, s in ROWS:
            sel = [v for k, v in u.items() if k.startswith(f"{part}|") and k.endswith(f"|{size}|{m}")]
            sel = [v for v in sel if "skipped" not in v]
            if sel:
                yield size, m, s, LABELS[m] + (" + One-Euro" if s == "smoothed" else ""), sel


def block(units: Units, args, minutes: float) -> str:
    u = units.doc["units"]
    lines = [
        f"Release weights (`sht.Detector()`), {platform.machine()} CPU, {torch.get_num_threads()} thread(s); "
        f"each part resumes from its units (the commands below).",
        "",
    ]
    if "score" in u:
        sc = u["score"]
        lines += [
            f"**Lost rule, rule 1** (mean heatmap peak of a crop; {sc['faces']} training faces x "
            f"{' and '.join(str(n) for n in sc.get('sizes', (16, 32)))} px; "
            f"the rule loses a face below {TrackConfig().min_score})",
            "",
            markdown_table(
                ["crop", "min", "1 %", "10 %", "median", "90 %", "max"],
                [[k] + [f"{v[f'p{q}']:.3f}" for q in (0, 1, 10, 50, 90, 100)] for k, v in sc["crops"].items()],
            ),
            "",
        ]
    static = [v for k, v in u.items() if k.startswith("static|")]
    if static:
        rows = []
        for size, m, s, label, sel in table_rows(u, "static", STATIC_SIZES):
            real = [v for k, v in u.items() if k.startswith("static|helen-test/") and k.endswith(f"|{size}|{m}")]
            rows.append(
                [
                    f"{size} px",
                    label,
                    len(sel),
                    pct(mean_of(sel, f"{s}_jitter")),
                    pct(mean_of(sel, f"{s}_jitter_d2")),
                    pct(mean_of(sel, f"{s}_bias")),
                    pct(mean_of(real, f"{s}_jitter")),
                    pct(mean_of(real, f"{s}_bias")),
                    pct(mean_of(sel, "hog_found"), 0) if m == "dlib" else "",
                ]
            )
        n_frames = static[0]["frames"]
        lines += [
            f"**A still face** ({n_frames} frames, independent sensor noise sigma 3/255 + JPEG q75 per frame; "
            "generated and Helen-test faces): jitter = mean distance to the mean position / inter-ocular (%), "
            "second-difference jitter (%), bias = mean position vs. truth (NME %)",
            "",
            markdown_table(
                [
                    "face",
                    "method",
                    "faces",
                    "jitter",
                    "2nd diff",
                    "bias",
                    "jitter, Helen test only",
                    "bias, Helen test only",
                    "dlib HOG finds it (%)",
                ],
                rows,
            ),
            "",
        ]
    for part in ("clip", "clip-sht", "clip-onnx", "clip-sht-onnx"):
        lines += clip_table(u, part)
    cmds = {  # the command that makes each part's units (a rerun resumes; delete units to measure again)
        "score": "python benchmarks/video.py --only score",
        "static": "python benchmarks/video.py --only static",
        "clip": "python benchmarks/video.py --only clips",
        "clip-sht": "python benchmarks/video.py --only clips --boxes sht",
        "clip-onnx": "python benchmarks/video.py --only clips --backend onnx --no-dlib",
        "clip-sht-onnx": "python benchmarks/video.py --only clips --boxes sht --backend onnx --no-dlib",
    }
    parts = {k.split("|")[0] for k in u}
    lines.append("Regenerate: " + "; ".join(f"`{c}`" for p, c in cmds.items() if p in parts))
    return "\n".join(lines)


def _clips(u: dict, part: str, size: int, a: str, b: str) -> list[str]:
    """The clips where methods ``a`` and ``b`` both have units with per-frame errors, in order."""
    return sorted(
        k.split("|")[1]
        for k, v in u.items()
        if k.startswith(f"{part}|")
        and k.endswith(f"|{size}|{a}")
        and "raw_errors" in v
        and "raw_errors" in u.get(k[: -len(a)] + b, {})
    )


def _paired(u: dict, part: str, size: int, a: str, b: str) -> list[tuple[dict, dict]]:
    """The units of methods ``a`` and ``b`` on each clip of :func:`_clips`."""
    return [(u[f"{part}|{c}|{size}|{a}"], u[f"{part}|{c}|{size}|{b}"]) for c in _clips(u, part, size, a, b)]


def clip_table(u: dict, part: str) -> list[str]:
    """The talking-head table of one box source (``clip``: Haar on the full-resolution frame, scaled down;
    ``clip-sht``: sht's face detector on the downscaled frame) and the tracking speed-up."""
    lines: list[str] = []
    clip_rows = [v for k, v in u.items() if k.startswith(f"{part}|") and "skipped" not in v]
    if clip_rows:
        rows = []
        for size, m, s, label, sel in table_rows(u, part, CLIP_SIZES):
            frames = sum(v["frames"] for v in sel)
            secs = sum(v["frames"] / v["fps"] for v in sel)
            lm_secs = sum(v["frames"] / v["landmark_fps"] for v in sel)
            calls = sum(v.get("detector_calls", 0) for v in sel)
            rows.append(
                [
                    f"{size} px",
                    label,
                    len(sel),
                    frames,
                    pct(mean_of(sel, f"{s}_jitter_d2", "frames")),
                    pct(mean_of(sel, f"{s}_agreement", "frames")),
                    pct(mean_of(sel, f"{s}_coverage", "frames"), 1),
                    f"{frames / secs:.1f}",
                    f"{frames / lm_secs:.1f}",
                    f"{100 * calls / frames:.0f}" if m != "dlib" else "-",
                    f"{sum(v['crops'] for v in sel) / frames:.2f}" if all("crops" in v for v in sel) else "-",
                    pct(mean_of(sel, "hog_found", "frames"), 0) if m == "dlib" else "",
                    pct(mean_of(sel, "detector_found", "frames"), 0),
                ]
            )
        source = (
            "the Haar detection on the full-resolution frame, scaled down (its time on the full frame counted)"
            if not part.startswith("clip-sht")
            else "sht's face detector on the downscaled frame itself (its time counted)"
        ) + (", the landmark network in ONNX Runtime (`--backend onnx`)" if part.endswith("-onnx") else "")
        lines += [
            f"**Talking heads, face boxes from {source}** (the shared clips downscaled so that the face's canonical "
            "crop is 16/24/32 px; reference: the same model tracking the full-resolution frames): jitter = second "
            "difference / inter-ocular (%), agreement = NME vs. the reference (%), coverage (%), frames/s (1 "
            "thread; the face detector's time counted where a method calls it; landmarks only, but for the row "
            "with the hallucinated faces), face-detector calls per 100 frames, crops through the landmark network "
            "per frame (the tracker's work, the same on any machine; photo mode: 3 per face found), frames where "
            "the face detector finds a face (%)",
            "",
            markdown_table(
                [
                    "face",
                    "method",
                    "clips",
                    "frames",
                    "jitter",
                    "agreement",
                    "coverage",
                    "frames/s",
                    "frames/s without the face detector",
                    "detector calls / 100 frames",
                    "network crops / frame",
                    "dlib HOG finds it (%)",
                    "box source finds a face (%)",
                ],
                rows,
            ),
            "",
        ]
        sp = []
        for size in CLIP_SIZES:
            t = [v for k, v in u.items() if k.startswith(f"{part}|") and k.endswith(f"|{size}|track") and "fps" in v]
            p = [
                v for k, v in u.items() if k.startswith(f"{part}|") and k.endswith(f"|{size}|per-frame") and "fps" in v
            ]
            if t and p:
                ft = sum(v["frames"] for v in t) / sum(v["frames"] / v["fps"] for v in t)
                fp = sum(v["frames"] for v in p) / sum(v["frames"] / v["fps"] for v in p)
                lt = sum(v["frames"] for v in t) / sum(v["frames"] / v["landmark_fps"] for v in t)
                lp = sum(v["frames"] for v in p) / sum(v["frames"] / v["landmark_fps"] for v in p)
                at, ap = mean_of(t, "raw_agreement", "frames"), mean_of(p, "raw_agreement", "frames")
                line = (
                    f"{size} px: tracking {ft:.1f} vs per-frame {fp:.1f} frames/s = **{ft / fp:.2f}x** "
                    f"({lt / lp:.2f}x without the face detector's time), agreement {pct(at)} vs {pct(ap)} %"
                )
                pairs_tp = _paired(u, part, size, "track", "per-frame")
                if pairs_tp:
                    ct, cp, n = common_agreement(*zip(*pairs_tp, strict=True))
                    line += f", on the {n} frames both cover **{pct(ct)} vs {pct(cp)} %**"
                sp.append(line)
        if sp:
            lines += ["Tracking against photo mode on every frame: " + "; ".join(sp) + ".", ""]
        per_clip = []  # the same comparison clip by clip: an average over frames can hide one clip or be made by it
        for size in CLIP_SIZES:
            pairs = {
                c: tp
                for c, tp in zip(
                    _clips(u, part, size, "track", "per-frame"),
                    _paired(u, part, size, "track", "per-frame"),
                    strict=True,
                )
            }
            common = {c: common_agreement([t], [p]) for c, (t, p) in pairs.items()}
            worse = {c: v for c, v in common.items() if v[0] > v[1]}
            if pairs:
                per_clip.append(
                    f"{size} px: tracking agrees at least as well on {len(pairs) - len(worse)} of {len(pairs)} clips"
                    + (
                        " (worse on "
                        + ", ".join(
                            f"{c}: {pct(a)} vs {pct(b)} % on {n} frames, coverage "
                            f"{pct(pairs[c][0]['raw_coverage'], 0)} vs {pct(pairs[c][1]['raw_coverage'], 0)} %"
                            for c, (a, b, n) in sorted(worse.items())
                        )
                        + ")"
                        if worse
                        else ""
                    )
                )
        if per_clip:
            lines += [
                "Per clip, agreement of tracking against photo mode per frame on the frames both cover: "
                + "; ".join(per_clip)
                + ".",
                "",
            ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--work", default=str(HERE / "runs" / "video"), help="cache of the full-resolution passes")
    ap.add_argument("--results", default=str(HERE / "results" / "video.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["score", "static", "clips", "table"],
        default=["score", "static", "clips"],
        help="parts to run (table: none, only rewrite the RESULTS.md block from the results file)",
    )
    ap.add_argument("--clips", nargs="*", help="clip stems (default: all)")
    ap.add_argument("--methods", nargs="*", choices=METHODS, help="talking-head methods to measure (default: all)")
    ap.add_argument("--max-frames", type=int, default=0, help="frames per clip (0: all)")
    ap.add_argument("--static-frames", type=int, default=60)
    ap.add_argument("--static-faces", type=int, default=5, help="generated faces and as many Helen test faces")
    ap.add_argument("--score-faces", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-dlib", action="store_true")
    ap.add_argument(
        "--backend", choices=["torch", "onnx"], default="torch", help="the landmark network's backend (part ...-onnx)"
    )
    ap.add_argument(
        "--boxes",
        choices=["haar-full", "sht"],
        default="haar-full",
        help="talking heads' face boxes: Haar on the full-resolution frame (scaled) or sht's detector on the frame",
    )
    ap.add_argument("--sht-weights", default=str(FACE_DETECTOR_WEIGHTS), help="for --boxes sht")
    ap.add_argument("--dry-run", action="store_true", help="one clip, 12 frames, 1+1 still faces x 6 frames")
    args = ap.parse_args()
    args.command = "python benchmarks/video.py " + " ".join(sys.argv[1:])
    args.static_sizes, args.clip_sizes = STATIC_SIZES, CLIP_SIZES
    work = Path(args.work)
    if args.dry_run:
        work = work / "dry"
        args.results, args.md = str(work / "video.json"), str(work / "RESULTS.md")
        args.clips = args.clips or [sorted(Path(args.data, "videos").glob("*.mp4"))[0].stem]
        args.max_frames, args.static_frames, args.static_faces, args.score_faces = 12, 6, 1, 4
    work.mkdir(parents=True, exist_ok=True)
    if args.boxes == "sht" and not Path(args.sht_weights).is_file():
        sys.exit(f"benchmarks/video.py: no sht face-detector weights at {args.sht_weights} (--sht-weights)")
    if not Path(args.data).is_dir():
        sys.exit(f"benchmarks/video.py: shared data not found at {args.data} (--data)")
    torch.set_num_threads(args.threads)
    det = sht.Detector(backend=args.backend, threads=args.threads)
    for face in (False, True):  # build the ONNX graphs (and warm torch up) before anything is timed
        det.predictor.predict([Image.new("RGB", (16, 16))], face=face)
    dl = None if args.no_dlib else Dlib()
    units = Units(Path(args.results), release_id())
    t0 = time.perf_counter()
    if "score" in args.only:
        part_score(args, det, units)
    if "static" in args.only:
        part_static(args, det, dl, units)
    if "clips" in args.only:
        part_clips(args, det, dl, units, work)
    md = block(units, args, (time.perf_counter() - t0) / 60)
    update_block(args.md, "video-cpu", md)
    print(md)


if __name__ == "__main__":
    main()
