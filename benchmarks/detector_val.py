"""Choosing between face-detector runs and thresholds on the *validation* split (never the benchmark's faces).

``benchmarks/face_detection.py`` measures on Helen test / YTF test faces and held-out backgrounds; choosing weights
or a threshold there would tune on the test split. This script builds the same kinds of test on training-side data:

- ``composite@S``: 640x480 composites (the benchmark's layout: faces of S px, up to 16 of them) of the faces that
  ``sht train-detector detector/small`` holds out by identity (``data.val_fraction``), on the training backgrounds;
- ``thumbs``: LFW-like 25x25 grey thumbnails of the same held-out faces (the landmark box 20 px wide, centred at
  (12.5, 14), as in ``lfw_subset()``); found = IoU > 0.3 with that box;
- ``bg-thumbs``: 25x25 grey views of the training background photos (no face): the share with any detection;
- ``borders``: both thumbnail sets with each candidate ``DetectSettings.border`` (the frame added to small photos),
  at the weights' own threshold: how the default border is chosen.

Each weights file is one unit (keyed by its hash) of ``benchmarks/results/detector_val.json``; its detections are
kept down to score 0.05, so every threshold of the grid is read from one pass.

    python benchmarks/detector_val.py --weights A.safetensors B.safetensors
    python benchmarks/detector_val.py --weights A.safetensors --ship src/sht/weights/face-detector.safetensors

``--ship`` writes the weights with the lowest threshold at which no face size has more than ``--fp`` (0.1) false
positives per 640x480 validation composite: issue 15's operating point, chosen here rather than on the benchmark.
With ``--upsample F`` (an enlarged level for faces under 20 px, ``DetectSettings.upsample``) the grid is that
level's threshold, the pyramid staying at the weights' own, and ``--ship`` writes both.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from face_detection import lfw_thumbnail
from PIL import Image
from video import Units

from sht.config import load_detector_config
from sht.data.composites import (
    CompositeBuilder,
    FaceBank,
    image_rng,
    lfw_nonfaces,
    load_backgrounds,
    load_faces,
    split_faces,
)
from sht.faces import ShtFaceDetector
from sht.metrics import detection_summary, match_detections
from sht.models.face_detector import merge_levels
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent
SIZES = (12, 16, 24, 32, 48, 64, 128)
THRESHOLDS = tuple(round(0.3 + 0.01 * k, 2) for k in range(61))  # 0.30 ... 0.90, every 0.01
SHOWN = tuple(round(0.4 + 0.05 * k, 2) for k in range(9))  # the rows of the printed table
SEED = 20261202
THUMB_BOX = np.array([[2.5, 4.0, 22.5, 24.0]])
BORDERS = (0, 8, 12, 16, 24)  # DetectSettings.border candidates


def val_faces() -> tuple[FaceBank, CompositeBuilder]:
    """detector/small's held-out faces and a builder of composites of them on the training backgrounds."""
    d = load_detector_config("detector/small", ["train.progress=false"]).data
    bank = load_faces(d.train, d.face_size, d.context, d.cache_dir)
    _, val = split_faces(bank, d.val_fraction, d.val_seed)
    if val is None:
        sys.exit("benchmarks/detector_val.py: detector/small holds out no validation faces")
    return val, CompositeBuilder(val, load_backgrounds(d.backgrounds), d, lfw_nonfaces())


def thumbnails(bank: FaceBank, n: int) -> list[Image.Image]:
    """LFW-like 25x25 grey thumbnails of the first ``n`` faces of ``bank`` (their landmark box at LFW's)."""
    return [
        lfw_thumbnail(
            Image.fromarray(bank.faces.images[i].permute(1, 2, 0).numpy()),
            bank.faces.points[i].double().numpy(),  # type: ignore[index]
        )[0]
        for i in range(min(n, len(bank)))
    ]


def background_thumbnails(builder: CompositeBuilder, n: int) -> list[Image.Image]:
    """``n`` 25x25 grey views (random place and scale) of the training background photos."""
    out = []
    for i in range(n):
        rng = image_rng(SEED, 1, i, stream=4)
        bg = builder.backgrounds[int(rng.integers(len(builder.backgrounds)))]
        _, h, w = bg.shape
        side = int(rng.integers(25, min(h, w, 200) + 1))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        view = Image.fromarray(bg[:, y : y + side, x : x + side].permute(1, 2, 0).numpy())
        out.append(view.convert("L").resize((25, 25), Image.BICUBIC).convert("RGB"))
    return out


def boxes(det: ShtFaceDetector, img: Image.Image) -> np.ndarray:
    return np.array([[b.x0, b.y0, b.x1, b.y1, b.score] for b in det(img)]).reshape(-1, 5)


def at_threshold(parts: tuple[np.ndarray, np.ndarray], t: float, own: float, upsample: float, nms: float) -> np.ndarray:
    """One image's boxes at grid value ``t``: the threshold of every level without the enlarged level; with it,
    the enlarged level's threshold (at least ``own``), the pyramid staying at the weights' own."""
    pyr, small = (torch.from_numpy(p) for p in parts)
    main, up = (t, np.inf) if upsample == 1 else (own, max(own, t))
    return merge_levels(pyr, small, main, up, nms).numpy()


def evaluate(
    weights: Path, args: argparse.Namespace, bank: FaceBank, builder: CompositeBuilder, upsample: float
) -> dict:
    det = ShtFaceDetector(weights, threshold=0.05, upsample=upsample)
    det.settings.upsample_below = args.upsample_below
    own = float(ShtFaceDetector(weights).settings.threshold)
    nms = det.settings.nms_iou
    grid = sorted({*(t for t in THRESHOLDS if abs(t - own) > 1e-3), round(own, 3)})
    res: dict = {
        "weights": str(weights),
        "upsample": upsample,
        "upsample_below": args.upsample_below,
        "threshold": own,
        "thresholds": grid,
        "sizes": {},
    }
    if upsample != 1:
        res["grid"] = "threshold of the enlarged level (the pyramid at the weights' own)"
    for size in args.sizes:
        n_faces = int(np.clip(round(0.2 * 640 * 480 / (2 * size) ** 2), 1, 16))
        items = [
            builder.compose(image_rng(SEED, size, i, stream=3), 640, 480, sizes=[float(size)] * n_faces, border=0.15)
            for i in range(args.images)
        ]
        parts = [det.levels(Image.fromarray(_u8(c.image))) for c in items]
        truths, ignores = [c.boxes.numpy() for c in items], [c.ignore.numpy() for c in items]
        rows = [
            detection_summary([at_threshold(p, t, own, upsample, nms) for p in parts], truths, 0.3, 0.0, ignores)
            for t in grid
        ]
        res["sizes"][str(size)] = {
            "recall": [r["recall"] for r in rows],
            "fp_per_image": [r["fp_per_image"] for r in rows],
            "faces": int(rows[0]["faces"]),
        }
        print(f"  {weights.name} {size} px: recall at own threshold {rows[grid.index(round(own, 3))]['recall']:.3f}")
    faces, empty = thumbnails(bank, args.thumbs), background_thumbnails(builder, args.thumbs)
    thumbs = [det.levels(im) for im in faces]
    res["thumbs_found"] = [
        float(
            np.mean(
                [
                    match_detections(at_threshold(p, t, own, upsample, nms), THUMB_BOX, 0.3)[2][0] > -np.inf
                    for p in thumbs
                ]
            )
        )
        for t in grid
    ]
    bgs = [det.levels(im) for im in empty]
    res["bg_thumbs_fired"] = [
        float(np.mean([len(at_threshold(p, t, own, upsample, nms)) > 0 for p in bgs])) for t in grid
    ]
    res["thumbs"] = len(thumbs)
    if upsample != 1:
        return res
    res["borders"] = {}  # DetectSettings.border on the thumbnails, at the weights' own threshold
    for b in BORDERS:
        framed = ShtFaceDetector(weights, border=b)
        found = [match_detections(boxes(framed, im), THUMB_BOX, 0.3)[2][0] > -np.inf for im in faces]
        res["borders"][str(b)] = {
            "thumbs_found": float(np.mean(found)),
            "bg_thumbs_fired": float(np.mean([len(framed(im)) > 0 for im in empty])),
        }
    return res


def _u8(image: torch.Tensor) -> np.ndarray:
    return (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def chosen(unit: dict, fp: float) -> float:
    """The lowest threshold of the grid at which every face size has at most ``fp`` false positives per 640x480."""
    for k, t in enumerate(unit["thresholds"]):
        if all(v["fp_per_image"][k] <= fp + 1e-9 for v in unit["sizes"].values()):
            return float(t)
    return float(unit["thresholds"][-1])


def table(unit: dict, fp: float) -> str:
    grid = unit["thresholds"]
    pick = chosen(unit, fp)
    head = ["threshold", *[f"recall {s}" for s in unit["sizes"]], "FP / 640x480 (mean; max)", "thumbs", "bg thumbs"]
    rows = []
    for k, t in enumerate(grid):
        if t not in SHOWN and t != pick and t != round(unit["threshold"], 3):
            continue
        fps = [v["fp_per_image"][k] for v in unit["sizes"].values()]
        mark = " (own)" if t == round(unit["threshold"], 3) else ""
        mark += f" (chosen: max FP <= {fp:g})" if t == pick else ""
        rows.append(
            [f"{t:.3f}{mark}"]
            + [f"{100 * v['recall'][k]:.0f}%" for v in unit["sizes"].values()]
            + [f"{np.mean(fps):.2f}; {max(fps):.2f}", f"{100 * unit['thumbs_found'][k]:.0f}%"]
            + [f"{100 * unit['bg_thumbs_fired'][k]:.0f}%"]
        )
    return markdown_table(head, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", required=True, help="face-detector .safetensors files")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--images", type=int, default=20, help="640x480 composites per face size")
    ap.add_argument("--thumbs", type=int, default=200, help="face / background thumbnails")
    ap.add_argument("--out", default=str(HERE / "results" / "detector_val.json"))
    ap.add_argument(
        "--upsample",
        type=float,
        nargs="+",
        default=[1.0],
        help="DetectSettings.upsample values (the enlarged level for the smallest faces; 1: none), one unit each",
    )
    ap.add_argument(
        "--upsample-below", type=float, default=20.0, help="DetectSettings.upsample_below: the faces that level keeps"
    )
    ap.add_argument("--fp", type=float, default=0.1, help="false positives per 640x480 allowed at every size")
    ap.add_argument(
        "--ship", help="write a copy of the (one) weights file here with the chosen threshold as its default"
    )
    args = ap.parse_args()
    torch.set_num_threads(1)
    units = Units(Path(args.out))
    units.doc["meta"] = {"machine": platform.machine(), "torch": torch.__version__, "seed": SEED}
    bank = builder = None
    for w, up in ((Path(w), up) for w in args.weights for up in args.upsample):
        if not w.is_file():
            sys.exit(f"benchmarks/detector_val.py: weights not found: {w}")
        key = hashlib.sha256(w.read_bytes()).hexdigest()[:12] + (f"-up{up:g}" if up != 1 else "")
        if up != 1 and args.upsample_below != 20:
            key += f"-below{args.upsample_below:g}"
        if key not in units:
            if bank is None:
                bank, builder = val_faces()
            units.put(key, evaluate(w, args, bank, builder, up))
        print(f"\n{w} ({key}; upsample {up:g})\n\n{table(units[key], args.fp)}")
        frames = units[key].get("borders", {})
        if not frames:
            continue
        print(
            "\nborder px: thumbs found / bg thumbs fired at its own threshold: "
            + "; ".join(
                f"{b}: {100 * v['thumbs_found']:.1f} % / {100 * v['bg_thumbs_fired']:.1f} %" for b, v in frames.items()
            )
        )
    if args.ship:
        from sht.export import export_face_detector

        if len(args.weights) != 1 or len(args.upsample) != 1:
            sys.exit("benchmarks/detector_val.py: --ship takes exactly one --weights file and one --upsample")
        unit, t = units[key], chosen(units[key], args.fp)
        fp = f"at most {args.fp:g} FP per 640x480 at every size of benchmarks/detector_val.py"
        if args.upsample[0] == 1:
            note, kw = f"threshold {t:.2f}: {fp}", {"threshold": t, "upsample": (1.0, 0.0, 20.0)}
        else:  # the pyramid keeps its threshold; the enlarged level gets the chosen one
            up = args.upsample[0]
            below = args.upsample_below
            note = f"threshold {unit['threshold']:.2f}; enlarged level x{up:g} from {t:.2f} below {below:g} px: {fp}"
            kw = {"threshold": unit["threshold"], "upsample": (up, t, below)}
        print(f"-> {export_face_detector(args.weights[0], args.ship, note=note, **kw)} ({note})")


if __name__ == "__main__":
    main()
