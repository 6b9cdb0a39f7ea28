"""Face detection benchmark: sht's face detector beside OpenCV's Haar cascade and dlib's HOG detector.

Settings (each detector x setting is one unit, saved to the results JSON as soon as it finishes, so a run resumes;
units of sht's detector are redone when its weights change):

- ``composite@S``: held-out composites, 640x480, faces whose 68-point landmark box has larger side S = 12, 16, 24,
  32, 48, 64, 128 px, from faces never trained on -- Helen test and YTF68 test (YTF test frames come from the same
  clips as YTF train, so recall is also reported on the Helen faces alone) -- on backgrounds never trained on
  (:data:`sht.data.composites.BENCHMARK_BACKGROUNDS`), with the training distribution of degradations (bicubic
  down/up, blur, noise, JPEG) and up to 10 degrees of roll. A face is found by a detection with IoU > 0.3 with its
  landmark box (each detector's own boxes, uncalibrated); recall and false positives per image (detections that
  match no face and do not lie on a face cut by the border), all detections as each detector returns them.
- ``lfw``: scikit-image's ``lfw_subset()``: 100 real 25x25 faces (cropped tightly: the face fills the image) and
  100 non-faces. A face is found when a detection has IoU > 0.3 with the central face box ``[2.5, 4, 22.5, 24]``
  (20 px, the landmark box of these crops, chin at the bottom edge); the non-face rate is the share of non-face
  images with any detection, over all 100 and over the 50 that sht never trained on (indices 150-199).
- ``photo:<name>@S``: scikit-image's astronaut and matplotlib's grace_hopper.jpg (held out of training), downscaled
  (PIL bicubic) so that the landmark box of the face (dlib's 68 points on the full photo) is 16, 24, 32 px.
- ``speed``: median ms per 640x480 photo (one composite), 1 thread and 2 threads (``speed-t2``).

Detectors: ``sht`` (its default settings, stored with its weights), ``sht-fast`` (the same weights without the
enlarged level for faces under 20 px, ``DetectSettings.upsample``), ``haar`` (``sht.faces.HaarFaceDetector``
defaults), ``dlib`` (HOG, no upsampling) and ``dlib-up1`` (HOG on the photo upsampled once, sht's default for dlib).

    python benchmarks/face_detection.py                   # all units; rewrites the face-detection block of RESULTS.md
    python benchmarks/face_detection.py --dry-run --out /tmp/fd   # tiny settings, every path, nothing committed
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from results_block import update_block
from video import Units

from sht.config import CompositeConfig
from sht.data.composites import (
    BENCHMARK_BACKGROUNDS,
    LFW_HELD_OUT_NONFACES,
    Composite,
    CompositeBuilder,
    FaceBank,
    image_rng,
    load_backgrounds,
    load_faces,
    sample_image_files,
)
from sht.data.formats import load_image
from sht.faces import FACE_DETECTOR_WEIGHTS, DlibFaceDetector, HaarFaceDetector, ShtFaceDetector
from sht.metrics import detection_summary, match_detections
from sht.models.face_detector import DetectSettings
from sht.report import draw_boxes, markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
SIZES = (12, 16, 24, 32, 48, 64, 128)
PHOTO_SIZES = (16, 24, 32)
PHOTOS = ("astronaut", "grace_hopper")
LFW_FACE_BOX = np.array([[2.5, 4.0, 22.5, 24.0]])
DETECTORS = ("sht", "sht-fast", "haar", "dlib", "dlib-up1")  # sht-fast: sht without its enlarged level
BORDERS = (0, 4, 8, 12, 16)
SEED = 20240615


def make_detector(name: str, weights: Path):  # noqa: ANN201 - a callable image -> list[FaceBox]
    if name == "sht":
        return ShtFaceDetector(weights)
    if name == "sht-fast":  # as make_face_detector("sht-fast"), for these weights
        return ShtFaceDetector(weights, upsample=1.0)
    if name == "haar":
        return HaarFaceDetector()
    return DlibFaceDetector(upsample=1 if name == "dlib-up1" else 0)


def as_array(boxes) -> np.ndarray:  # noqa: ANN001
    return np.array([[b.x0, b.y0, b.x1, b.y1, b.score] for b in boxes]).reshape(-1, 5)


def benchmark_faces(args: argparse.Namespace) -> tuple[FaceBank, np.ndarray]:
    """Helen test + YTF68 test faces (or generated ones for a run without shared data) and a Helen flag per face."""
    data = Path(args.data)
    sources = [str(data / "300w/helen/testset"), str(data / "ytf68/test")]
    if not all(Path(s).is_dir() for s in sources):
        if not args.dry_run:
            sys.exit(f"benchmarks/face_detection.py: Helen test / YTF test not found under {data} (--data)")
        sources = ["synthetic:24:999"]
    bank = load_faces(sources, 96, 1.4, args.cache)
    helen = np.array(["helen/testset" in k for k in bank.keys])
    return bank, helen


def composites(args: argparse.Namespace, size: int, builder: CompositeBuilder) -> list[Composite]:
    """The held-out 640x480 composites of faces of ``size`` px (deterministic)."""
    n_faces = int(np.clip(round(0.2 * 640 * 480 / (2 * size) ** 2), 1, 16))
    out = []
    for i in range(args.images):
        rng = image_rng(SEED, size, i, stream=2)
        out.append(builder.compose(rng, 640, 480, sizes=[float(size)] * n_faces, border=0.15))
    return out


def to_image(c: Composite) -> Image.Image:
    return Image.fromarray((c.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def done(units: Units, key: str, name: str, wid: str) -> bool:
    """Whether unit ``key`` is finished (for sht: with these weights)."""
    return key in units and units[key].get("weights") == (wid if name.startswith("sht") else None)


def part_composites(args, names, units, builder, helen, wid) -> None:  # noqa: ANN001
    cache: dict[int, list[Composite]] = {}
    for size in args.sizes:
        for name in names:
            key = f"{name}|composite@{size}"
            if done(units, key, name, wid):
                continue
            items = cache.setdefault(size, composites(args, size, builder))
            det = make_detector(name, args.weights)
            preds = [as_array(det(to_image(c))) for c in items]
            truths, ignores = [c.boxes.numpy() for c in items], [c.ignore.numpy() for c in items]
            s = detection_summary(preds, truths, 0.3, 0.0, ignores)
            found = np.concatenate(
                [match_detections(p, t, 0.3, g)[2] for p, t, g in zip(preds, truths, ignores, strict=True)]
            )
            is_helen = np.concatenate([helen[c.faces.numpy()] for c in items])
            res = {
                "recall": s["recall"],
                "fp_per_image": s["fp_per_image"],
                "faces": int(s["faces"]),
                "helen_faces": int(is_helen.sum()),
                "images": len(items),
            }
            if is_helen.any():
                res["recall_helen"] = float(np.isfinite(found[is_helen]).mean())
            units.put(key, {**res, "weights": wid if name.startswith("sht") else None})


def part_lfw(args, names, units, weights_id) -> None:  # noqa: ANN001
    from skimage.data import lfw_subset

    arr = lfw_subset()
    imgs = [Image.fromarray(np.round(a * 255).astype(np.uint8)).convert("RGB") for a in arr]
    for name in names:
        key = f"{name}|lfw"
        if done(units, key, name, weights_id):
            continue
        det = make_detector(name, args.weights)
        found = [match_detections(as_array(det(im)), LFW_FACE_BOX, 0.3)[2][0] > -np.inf for im in imgs[:100]]
        fired = [len(det(im)) > 0 for im in imgs[100:]]
        held = [fired[i - 100] for i in LFW_HELD_OUT_NONFACES]
        units.put(
            key,
            {
                "faces_found": float(np.mean(found)),
                "nonface_fp_rate": float(np.mean(fired)),
                "nonface_fp_rate_heldout": float(np.mean(held)),
                "weights": weights_id if name.startswith("sht") else None,
            },
        )


def photo_boxes() -> dict[str, tuple[Image.Image, np.ndarray]]:
    """The benchmark photos and their faces' landmark boxes (dlib's 68 points on the full photo)."""
    from sht.teacher import DlibTeacher

    teacher = DlibTeacher()
    files = sample_image_files()
    out = {}
    for n in PHOTOS:
        img = load_image(files[n])
        pts = teacher(img)
        if pts is None:
            raise RuntimeError(f"dlib finds no face in {n}")
        out[n] = (img, np.concatenate([pts.min(0), pts.max(0)]))
    return out


def part_photos(args, names, units, weights_id) -> None:  # noqa: ANN001
    photos = None
    for n in PHOTOS:
        for size in PHOTO_SIZES:
            for name in names:
                key = f"{name}|photo:{n}@{size}"
                if done(units, key, name, weights_id):
                    continue
                photos = photos or photo_boxes()
                img, box = photos[n]
                s = size / max(box[2] - box[0], box[3] - box[1])
                small = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.BICUBIC)
                sx, sy = small.size[0] / img.size[0], small.size[1] / img.size[1]
                truth = (box * [sx, sy, sx, sy])[None]
                pred = as_array(make_detector(name, args.weights)(small))
                _, flags, found = match_detections(pred, truth, 0.3)
                units.put(
                    key,
                    {
                        "found": bool(found[0] > -np.inf),
                        "false_positives": int((flags == 0).sum()),
                        "photo_size": list(small.size),
                        "weights": weights_id if name.startswith("sht") else None,
                    },
                )


def tight_crops(args) -> tuple[list[Image.Image], list[np.ndarray]]:  # noqa: ANN001
    """LFW-like face thumbnails from Helen *train* faces (training data, never the benchmark's): 25x25, grey, the
    landmark box where LFW's is (20 px wide, centred at (12.5, 14)), with that box as truth."""
    from sht.data.formats import scan_pts_folder

    folder = Path(args.data) / "300w/helen/trainset"
    if not folder.is_dir():
        sys.exit(f"benchmarks/face_detection.py: Helen train not found under {args.data} (--data)")
    imgs, truths = [], []
    for smp in scan_pts_folder(folder).samples[: args.border_faces]:
        thumb, truth = lfw_thumbnail(load_image(smp.image), smp.points)
        imgs.append(thumb)
        truths.append(truth)
    return imgs, truths


def lfw_thumbnail(img: Image.Image, pts: np.ndarray) -> tuple[Image.Image, np.ndarray]:
    """A face as in ``lfw_subset()``: 25x25 grey, its landmark box 20 px wide centred at (12.5, 14); returns the
    thumbnail (RGB) and that box ``(1, 4)`` in its pixels."""
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    unit = max(x1 - x0, y1 - y0) / 20  # source px per thumbnail px
    ox, oy = (x0 + x1) / 2 - 12.5 * unit, (y0 + y1) / 2 - 14 * unit
    crop = img.convert("L").transform((25, 25), Image.AFFINE, (unit, 0, ox, 0, unit, oy), Image.BICUBIC)
    return crop.convert("RGB"), np.array([[x0 - ox, y0 - oy, x1 - ox, y1 - oy]]) / unit


def part_border(args, units, wid) -> None:  # noqa: ANN001
    """Validation of ``DetectSettings.border`` (the default is chosen here, on training faces): the share of
    LFW-like Helen-train thumbnails found and of LFW's training non-faces (indices 100-149) fired on, per border."""
    from sht.data.composites import lfw_nonfaces

    imgs, truths = tight_crops(args)
    neg = [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in lfw_nonfaces()]
    for border in BORDERS:
        key = f"sht|border{border}"
        if done(units, key, "sht", wid):
            continue
        det = ShtFaceDetector(args.weights, border=border)
        found = [
            match_detections(as_array(det(im)), t, 0.3)[2][0] > -np.inf for im, t in zip(imgs, truths, strict=True)
        ]
        fired = [len(det(im)) > 0 for im in neg]
        units.put(
            key,
            {
                "found": float(np.mean(found)),
                "faces": len(imgs),
                "nonface_fp_rate": float(np.mean(fired)),
                "weights": wid,
            },
        )


def part_speed(args, names, units, builder, weights_id) -> None:  # noqa: ANN001
    """Median ms per 640x480 photo with 1 thread (``speed``) and with both cores (``speed-t2``; torch's and
    OpenCV's threads), load average before and after each unit recorded."""
    import cv2

    img = to_image(builder.compose(image_rng(SEED, 0, 0, stream=3), 640, 480, sizes=[24, 32, 48, 64]))
    for threads in (1, 2):
        for name in names:
            key = f"{name}|speed" + ("" if threads == 1 else f"-t{threads}")
            if done(units, key, name, weights_id):
                continue
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
            det = make_detector(name, args.weights)
            det(img)
            load = os.getloadavg()[0]
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                det(img)
                times.append(time.perf_counter() - t)
            units.put(
                key,
                {
                    "ms_per_640x480": 1000 * statistics.median(times),
                    "threads": threads,
                    "load": [load, os.getloadavg()[0]],
                    "weights": weights_id if name.startswith("sht") else None,
                },
            )
    torch.set_num_threads(1)
    cv2.setNumThreads(1)


def figure(args, builder, path: Path, weights: Path) -> None:  # noqa: ANN001
    """A composite crowd (faces of 12-48 px) with sht's detections (green: a face, red: a false positive) and the
    landmark boxes of the faces (yellow), beside Haar's."""
    rng = image_rng(SEED, 0, 0, stream=4)
    sizes = sorted(float(s) for s in np.exp(rng.uniform(np.log(12), np.log(48), 24)))
    c = builder.compose(rng, 640, 480, sizes=sizes, border=0.1)
    img = to_image(c)
    panels = []
    for name in ("sht", "haar"):
        pred = as_array(make_detector(name, weights)(img))
        _, flags, _ = match_detections(pred, c.boxes.numpy(), 0.3, c.ignore.numpy())
        order = np.argsort(-pred[:, 4], kind="stable")
        pred = pred[order]
        panel = draw_boxes(img.resize((1280, 960), Image.NEAREST), c.boxes.numpy(), None, 2.0, (255, 230, 0))
        panel = draw_boxes(panel, pred[flags == 1], pred[flags == 1, 4].tolist(), 2.0, (0, 255, 0))
        panel = draw_boxes(panel, pred[flags == 0], pred[flags == 0, 4].tolist(), 2.0, (255, 40, 40))
        ImageDraw.Draw(panel).text(
            (8, 8), f"{name}: {int((flags == 1).sum())} of {len(c.boxes)} faces", fill=(255, 255, 255)
        )
        panels.append(panel)
    out = Image.new("RGB", (1280 * 2 + 8, 960), (255, 255, 255))
    out.paste(panels[0], (0, 0))
    out.paste(panels[1], (1288, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def block(units: Units, args: argparse.Namespace, names: list[str]) -> str:
    u = units.doc["units"]

    def get(name: str, setting: str, key: str, fmt: str = "{:.0%}") -> str:
        v = u.get(f"{name}|{setting}", {}).get(key)
        return "-" if v is None else (fmt.format(v) if not isinstance(v, bool) else ("yes" if v else "no"))

    sizes = [s for s in SIZES if any(f"{n}|composite@{s}" in u for n in names)]
    rec = [[n] + [get(n, f"composite@{s}", "recall") for s in sizes] for n in names]
    helen = [[n] + [get(n, f"composite@{s}", "recall_helen") for s in sizes] for n in names]
    fp = [[n] + [get(n, f"composite@{s}", "fp_per_image", "{:.2f}") for s in sizes] for n in names]
    other = [
        [
            n,
            get(n, "lfw", "faces_found"),
            get(n, "lfw", "nonface_fp_rate"),
            get(n, "lfw", "nonface_fp_rate_heldout"),
            *[get(n, f"photo:{p}@{s}", "found") for p in PHOTOS for s in PHOTO_SIZES],
            get(n, "speed", "ms_per_640x480", "{:.0f}") + " / " + get(n, "speed-t2", "ms_per_640x480", "{:.0f}"),
        ]
        for n in names
    ]
    head = ["detector", *[f"S={s}" for s in sizes]]
    meta = units.doc.get("meta", {})
    lines = [
        "## Face detection",
        "",
        f"sht's detector ({meta.get('weights', '?')}) beside OpenCV Haar and dlib HOG (`benchmarks/face_detection.py`; "
        f"{meta.get('machine', '')}). Held-out composites, 640x480, {args.images} per size, faces of Helen test + "
        "YTF test whose landmark box has larger side S px, on held-out backgrounds; found = IoU > 0.3 with the "
        "landmark box.",
        "",
        "**Recall** (all faces)",
        "",
        markdown_table(head, rec),
        "",
        "**Recall, Helen test faces only** (YTF test frames share clips with YTF train)",
        "",
        markdown_table(head, helen),
        "",
        "**False positives per image**",
        "",
        markdown_table(head, fp),
        "",
        "**Real faces**: scikit-image's 100 LFW 25x25 faces found (IoU > 0.3 with the central box [2.5, 4, 22.5, 24]), "
        "share of its 100 non-faces with any detection (and of the 50 never trained on); astronaut and "
        "grace_hopper.jpg downscaled so that the face is 16/24/32 px (found yes/no); ms per 640x480 photo (1 thread / "
        f"2 threads; 1-minute load average during the sht unit: {load_note(u)}).",
        "",
        markdown_table(
            [
                "detector",
                "LFW faces",
                "non-faces fired",
                "held-out non-faces fired",
                *[f"{p} {s}" for p in PHOTOS for s in PHOTO_SIZES],
                "ms / 640x480 (1 / 2 threads)",
            ],
            other,
        ),
        "",
    ]
    borders = [(b, u[f"sht|border{b}"]) for b in BORDERS if f"sht|border{b}" in u]
    if borders:
        lines += [
            f"**Border** (`DetectSettings.border`, px of the photo's mean colour added around photos whose smaller "
            f"side is at most {DetectSettings.border_max_side} px; default {DetectSettings.border}, chosen here on "
            "training data): LFW-like 25x25 grey thumbnails of "
            f"{borders[0][1]['faces']} Helen *train* faces found / LFW's 50 training non-faces fired on: "
            + "; ".join(f"{b} px: {v['found']:.0%} / {v['nonface_fp_rate']:.0%}" for b, v in borders)
            + ".",
            "",
        ]
    full = "python benchmarks/face_detection.py"
    last = "" if args.command == full else f" (units are kept; the last run was `{args.command}`)"
    lines.append(f"Regenerate: `{full}`{last}")
    return "\n".join(lines)


def load_note(u: dict) -> str:
    v = u.get("sht|speed", {}).get("load")
    return "-" if not v else f"{v[0]:.1f} before, {v[1]:.1f} after"


def weights_id(path: Path) -> str:
    if not path.is_file():
        return "missing"
    return hashlib.sha1(path.read_bytes()).hexdigest()[:12]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--weights", default=str(FACE_DETECTOR_WEIGHTS), help="sht face-detector weights")
    ap.add_argument("--detectors", nargs="+", choices=DETECTORS, default=list(DETECTORS))
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--images", type=int, default=40, help="composites per face size")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs for the speed unit")
    ap.add_argument(
        "--only",
        nargs="+",
        choices=["composite", "lfw", "photos", "speed", "figure", "border"],
        default=["composite", "lfw", "photos", "speed", "figure", "border"],
    )
    ap.add_argument("--cache", default=str(ROOT / ".cache" / "sht"))
    ap.add_argument("--border-faces", type=int, default=300, help="Helen train thumbnails for --only border")
    ap.add_argument("--out", help="write results, RESULTS.md block and figure under this folder instead")
    ap.add_argument("--dry-run", action="store_true", help="2 images per size, sizes 16 and 64, 1 timed run")
    args = ap.parse_args()
    args.command = " ".join(["python benchmarks/face_detection.py", *sys.argv[1:]])
    if args.dry_run:
        args.images, args.repeat = min(args.images, 2), 1
        args.sizes = args.sizes if args.sizes != list(SIZES) else [16, 64]
    base = Path(args.out) if args.out else HERE
    results = base / "results" / "face_detection.json" if args.out else HERE / "results" / "face_detection.json"
    md = base / "RESULTS.md"
    fig = base / "figures" / "face_detection_crowd.png"
    args.weights = Path(args.weights)
    names = list(args.detectors)
    if any(n.startswith("sht") for n in names) and not args.weights.is_file():
        sys.exit(f"benchmarks/face_detection.py: no sht face-detector weights at {args.weights} (--weights)")
    torch.set_num_threads(1)
    d = DetectSettings()  # sht's units: these weights and border settings
    wid = f"{weights_id(args.weights)}-border{d.border}-{d.border_max_side}"
    units = Units(results)
    units.doc["meta"] = {
        "weights": f"{args.weights.name} {wid}",
        "machine": f"{platform.machine()}, torch {torch.__version__}, 1 thread",
    }
    bank, helen = benchmark_faces(args)
    cfg = CompositeConfig(rotation=10.0, negatives=0)
    builder = CompositeBuilder(bank, load_backgrounds(["builtin"], BENCHMARK_BACKGROUNDS), cfg, procedural=0.0)
    if "composite" in args.only:
        part_composites(args, names, units, builder, helen, wid)
    if "lfw" in args.only:
        part_lfw(args, names, units, wid)
    if "photos" in args.only:
        part_photos(args, names, units, wid)
    if "speed" in args.only:
        part_speed(args, names, units, builder, wid)
    if "border" in args.only and "sht" in names:
        part_border(args, units, wid)
    if "figure" in args.only and "sht" in names:
        figure(args, builder, fig, args.weights)
        print(f"figure -> {fig}")
    text = block(units, args, names)
    update_block(md, "face-detection", text)
    print(text)


if __name__ == "__main__":
    main()
