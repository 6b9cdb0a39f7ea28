"""Command-line interface: ``sht train | recipe | train-detector | evaluate | detect | export | data | demo``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .errors import USER_ERRORS, DataError, TrainingDiverged


class UsageError(ValueError):
    """A command-line argument that cannot be used."""


def _expand_inputs(items: list[str]) -> list[Path]:
    from .data.formats import IMAGE_SUFFIXES

    out: list[Path] = []
    for it in items:
        p = Path(it)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{p}: folder holds no images ({'/'.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    return out


def _train_with(args: argparse.Namespace, load, run):  # noqa: ANN001, ANN202 - config loader, training function
    """Load ``args.config`` with the overrides (and ``--out``), train, print the last validation metrics."""
    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    cfg = load(args.config, overrides)
    metrics = run(cfg)
    print(json.dumps({k: round(v, 5) for k, v in metrics.items()}, indent=1))
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import train

    _train_with(args, load_config, train)
    return 0


def cmd_train_detector(args: argparse.Namespace) -> int:
    from .config import load_detector_config
    from .train.face_detector import train_detector

    cfg = _train_with(args, load_detector_config, train_detector)
    print(f"sht train-detector: weights -> {Path(cfg.train.out_dir) / 'face-detector.safetensors'}")
    return 0


def cmd_recipe(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import run_recipe

    cfg = load_config(args.config, list(args.overrides))
    runs = run_recipe(cfg, args.out, stages=args.stages)
    for s, run in sorted(runs.items()):
        if s in args.stages:
            print(f"stage {s}: {run / 'checkpoints' / 'last.safetensors'}")
    return 0


def cmd_configs(args: argparse.Namespace) -> int:
    from .config import PRESETS, packaged_configs

    print("presets: " + ", ".join(PRESETS))
    print("packaged configs (sht train NAME / sht recipe NAME --out DIR; detector/*: sht train-detector NAME):")
    items = packaged_configs()
    width = max(map(len, items), default=0)
    for name, about in items.items():
        print(f"  {name:<{width}}  {about}")
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data.datasets import check_dataset

    print(check_dataset(args.format, args.root))
    return 0


def cmd_data_label(args: argparse.Namespace) -> int:
    from .teacher import label_folder

    report = label_folder(args.folder, teacher=args.teacher, out=args.out, overwrite=args.overwrite, limit=args.limit)
    print(report.summary())
    return 0 if report.labeled else 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.lr_size or [16],
        out_dir=args.out,
        limit=args.limit,
        norm=args.norm,
        device=args.device,
    )
    print(result)
    return 0


def _points(pts) -> list[list[float]]:  # noqa: ANN001
    return [[round(float(x), 3), round(float(y), 3)] for x, y in pts]


def _read_boxes(args: argparse.Namespace) -> dict[str, list[list[float]]] | list[list[float]] | None:
    """``--box x0,y0,x1,y1`` (for every input) or ``--boxes FILE`` (JSON ``{image: [[x0, y0, x1, y1], ...]}`` or
    lines ``image x0 y0 x1 y1``)."""
    if args.box:
        try:
            return [[float(v) for v in b.split(",")] for b in args.box]
        except ValueError:
            raise UsageError(f"--box takes x0,y0,x1,y1, got {args.box}") from None
    if not args.boxes:
        return None
    path = Path(args.boxes)
    if not path.is_file():
        raise UsageError(f"--boxes file not found: {path}")
    text = path.read_text()
    try:
        doc = json.loads(text)
        return {str(k): [[float(v) for v in b] for b in bs] for k, bs in doc.items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        pass
    out: dict[str, list[list[float]]] = {}
    for n, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            out.setdefault(parts[0], []).append([float(v) for v in parts[1:5]])
        except ValueError:
            raise UsageError(f"{path}:{n}: expected 'image x0 y0 x1 y1', got {line!r}") from None
        if len(parts) != 5:
            raise UsageError(f"{path}:{n}: expected 'image x0 y0 x1 y1', got {line!r}")
    return out


class _Outputs:
    """Where ``sht detect`` writes faces and overlays, with unique file stems."""

    def __init__(self, args: argparse.Namespace, any_image: bool) -> None:
        self.faces = Path(args.save_faces) if args.save_faces else None
        self.overlays = Path(args.save_overlay) if args.save_overlay else None
        if args.show and self.overlays is None:
            import tempfile

            self.overlays = Path(tempfile.mkdtemp(prefix="sht-overlay-"))
        for d in (self.faces, self.overlays):
            if d is not None and any_image:
                d.mkdir(parents=True, exist_ok=True)
        self.written: list[Path] = []
        self._used: set[str] = set()

    def stem(self, stem: str) -> str:
        name, k = stem, 1
        while name in self._used:
            name, k = f"{stem}_{k}", k + 1
        self._used.add(name)
        return name

    def overlay(self, stem: str, panel) -> None:  # noqa: ANN001 - a PIL image
        assert self.overlays is not None
        path = self.overlays / f"{stem}_overlay.png"
        panel.save(path)
        self.written.append(path)


def _face_detector_name(args: argparse.Namespace) -> str:
    """``--face-detector`` (haar, dlib, sht, sht-fast or a face-detector .safetensors file) or ``--find-faces
    NAME``."""
    name = args.face_detector
    if name is None:
        from .faces import default_face_detector

        return default_face_detector() if args.find_faces in (None, "auto") else args.find_faces
    if args.find_faces not in (None, "auto", name):
        raise UsageError(f"--find-faces {args.find_faces} and --face-detector {name} disagree; give one")
    if name not in ("haar", "dlib", "sht", "sht-fast") and not (name.endswith(".safetensors") and Path(name).is_file()):
        raise UsageError(
            f"--face-detector takes haar, dlib, sht, sht-fast or an existing .safetensors file, got {name!r}"
        )
    return name


def _detect_crops(args: argparse.Namespace, weights: Path | None, good: list[Path], images: list, out: _Outputs):  # noqa: ANN001, ANN202
    """Crop mode: every input is a canonical face crop; one result per image."""
    from .infer import Predictor, release_predictor
    from .report import detection_panel

    kw = {"backend": args.backend, "threads": args.threads, "flip": _flip(args)}
    model = (
        release_predictor(args.device, **kw)
        if weights is None
        else Predictor.from_checkpoint(weights, device=args.device, **kw)
    )
    face = out.faces is not None or out.overlays is not None  # the JSON holds landmarks only
    results = []
    for p, im, pred in zip(good, images, model.predict(images, args.batch_size, face=face), strict=True):
        entry: dict[str, object] = {"image": str(p), "width": im.size[0], "height": im.size[1]}
        if pred.landmarks is not None:
            entry["landmarks"] = _points(pred.landmarks)
            entry["scores"] = [round(float(s), 4) for s in pred.scores]
        stem = out.stem(p.stem)
        if out.faces is not None and pred.face is not None:
            fp = out.faces / f"{stem}.png"
            pred.face.save(fp)
            entry["face"] = str(fp)
        if out.overlays is not None:
            lms = [pred.landmarks] if pred.landmarks is not None else []
            out.overlay(stem, detection_panel(im, lms, [pred.face], None))
        results.append(entry)
    return model, results


def _flip(args: argparse.Namespace) -> bool | None:
    """``--flip``: on / off, or None (auto: the release family's own choice; off for other weights)."""
    return {"on": True, "off": False}.get(args.flip)


def _detector(args: argparse.Namespace, weights: Path | None):  # noqa: ANN202 - a sht.infer.Detector
    """The photo / video detector of ``sht detect``'s options (face detector, device, backend, threads, flip)."""
    from .infer import Detector

    return Detector(
        weights,
        device=args.device,
        face_detector=_face_detector_name(args),
        backend=args.backend,
        threads=args.threads,
        flip=_flip(args),
    )


def _detect_photos(args: argparse.Namespace, weights: Path | None, good: list[Path], images: list, out: _Outputs):  # noqa: ANN001, ANN202
    """Photo mode: faces are found (or boxes given), cropped canonically and refined; one entry per photo with
    its faces in photo coordinates."""
    from .report import detection_panel

    boxes = _read_boxes(args)
    det = _detector(args, weights)
    results = []
    for p, im in zip(good, images, strict=True):
        entry: dict[str, object] = {"image": str(p), "width": im.size[0], "height": im.size[1], "faces": []}
        given = boxes if isinstance(boxes, list) else (boxes or {}).get(p.name, (boxes or {}).get(str(p)))
        if boxes is not None and given is None:
            entry["error"] = "no box given for this image"
            results.append(entry)
            continue
        faces = det.detect(im, given, face=out.faces is not None or out.overlays is not None)
        stem = out.stem(p.stem)
        for i, f in enumerate(faces):
            fe: dict[str, object] = {
                "box": [round(v, 2) for v in f.box] if f.box else None,
                "box_score": None if f.box_score is None else round(f.box_score, 4),
                "crop": [round(v, 2) for v in f.crop],
                "landmarks": _points(f.landmarks),
                "scores": [round(float(s), 4) for s in f.scores],
            }
            if out.faces is not None and f.face is not None:
                fp = out.faces / f"{stem}_face{i}.png"
                f.face.save(fp)
                fe["face"] = str(fp)
            entry["faces"].append(fe)  # type: ignore[attr-defined]
        if out.overlays is not None:
            panel = detection_panel(
                im,
                [f.landmarks for f in faces],
                [f.face for f in faces],
                [f.crop for f in faces],
                boxes=[f.box for f in faces],
                box_scores=[f.box_score for f in faces],
            )
            out.overlay(stem, panel)
        results.append(entry)
    return det.predictor, results


def _detect_video(args: argparse.Namespace, weights: Path | None, path: Path) -> int:
    """Video mode: faces are detected on the first frame and tracked along the clip (:mod:`sht.video`); JSON
    (written whole at the end or on Ctrl-C, ``complete: false`` then), CSV, overlay and face videos."""
    from .video import OneEuroConfig, TrackConfig, is_video, run_video

    if args.boxes or args.show:
        raise UsageError("--boxes and --show are for photos; for a video give --box x0,y0,x1,y1 (first frame)")
    boxes = _read_boxes(args)
    try:
        smooth = OneEuroConfig.parse(args.smooth) if args.smooth is not None else None
        overrides: dict = {}  # TrackConfig fields given on the command line
        if args.settle is not None:
            try:
                overrides["settle"] = None if args.settle == "off" else float(args.settle)
            except ValueError:
                raise ValueError(f"--settle: a number or off, got {args.settle!r}") from None
        faces = bool(args.save_faces or args.save_face_video)  # the overlay draws landmarks only
        if args.detect_every is not None:
            overrides["detect_every"] = args.detect_every
        cfg = TrackConfig(batch_frames=args.batch_frames, smooth=smooth, faces=faces, **overrides)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    overlay = Path(args.save_overlay) if args.save_overlay else None
    if overlay is not None and not is_video(overlay):
        overlay = overlay / f"{path.stem}_overlay.mp4"
    det = _detector(args, weights)
    track = det.track(path, cfg, boxes=boxes)  # type: ignore[arg-type]
    model = det.predictor
    header = {
        "weights": model.source,
        "mode": "video",
        "convention": "x right, y down, pixels of the video frame, frame spans [0,W]x[0,H]; time in seconds",
        "model": {"streams": model.config.model.streams, "input_size": model.input_size, "face_size": model.face_size},
        "video": track.info.to_dict() if track.info else None,
        "tracking": {k: v for k, v in vars(cfg).items() if k != "smooth"},
        "smoothing": None if smooth is None else vars(smooth),
        "face_detector": det.face_detector_name if boxes is None else "given boxes, then " + det.face_detector_name,
    }
    res = run_video(
        track,
        args.out,
        header,
        csv_path=args.csv,
        overlay=overlay,
        face_video=args.save_face_video,
        face_id=args.face_id,
        faces_dir=args.save_faces,
    )
    st = res["stats"]
    for problem in res["problems"]:
        print(f"sht detect: warning: {problem}", file=sys.stderr)
    ids = len(res["tracks"])
    lost = sum(len(t["lost_at"]) for t in res["tracks"].values())
    what = f"{ids} face id(s), {lost} loss(es)" if ids else "no face found"
    print(
        f"sht detect: {st['frames']} frame(s), {what}, {st['detector_calls']} face-detector call(s) -> "
        + ", ".join(res["outputs"].values())
    )
    if res["interrupted"]:
        print(f"sht detect: interrupted; the {st['frames']} frame(s) done are written (complete: false)")
        return 130
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    from .data.formats import load_image
    from .video import is_video

    weights = Path(args.weights) if args.weights else None  # None: the release family
    videos = [Path(p) for p in args.inputs if is_video(p)]
    if videos:
        if len(args.inputs) > 1:
            raise UsageError(f"one video per run (got {len(args.inputs)} inputs with {len(videos)} video(s))")
        return _detect_video(args, weights, videos[0])
    photo = any(v is not None for v in (args.find_faces, args.face_detector, args.box, args.boxes))
    if photo:
        _read_boxes(args)  # refuse a bad --box/--boxes (or face detector) before any work
        _face_detector_name(args)
    images, good, failed = [], [], []
    for p in _expand_inputs(args.inputs):
        try:
            images.append(load_image(p))
            good.append(p)
        except DataError as exc:
            print(f"sht detect: skipped {exc}", file=sys.stderr)
            failed.append({"image": str(p), "error": str(exc)})
    out = _Outputs(args, bool(images))
    run = _detect_photos if photo else _detect_crops
    model, results = run(args, weights, good, images, out)
    doc = {
        "weights": model.source,
        "mode": "photo" if photo else "crop",
        "convention": "x right, y down, pixels of each input image, image spans [0,W]x[0,H]",
        "model": {
            "streams": model.config.model.streams,
            "input_size": model.input_size,
            "face_size": model.face_size,
        },
        "results": failed + results,
    }
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    note = f"; {len(failed)} skipped (see stderr)" if failed else ""
    print(f"sht detect: {len(good)} image(s) -> {path}{note}")
    if out.written:
        print(f"sht detect: overlays in {out.overlays}")
    if args.show:
        _show(out.written)
    return 1 if failed else 0


def _show(paths: list[Path]) -> None:
    """Open the overlays in the system's image viewer (prints where they are when there is no display)."""
    import os

    from PIL import Image

    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or sys.platform in ("darwin", "win32")):
        print("sht detect: no display to show the overlays on; open the files above", file=sys.stderr)
        return
    for p in paths:
        Image.open(p).show()


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx, export_weights

    if not (args.onnx or args.weights):
        raise UsageError("nothing to export: give --onnx OUT.onnx and/or --weights OUT.safetensors")
    if args.weights:
        print(f"sht export: weights -> {export_weights(args.checkpoint, args.weights, fp16=not args.fp32)}")
    if args.onnx:
        print(f"sht export: ONNX -> {export_onnx(args.checkpoint, args.onnx)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, train_demo

    if args.train:
        report = train_demo(args.out, steps=args.steps, train_faces=args.train_faces, test_faces=args.test_faces)
    else:
        report = run_demo(args.out, weights=args.weights)
    print(f"sht demo: report written to {report}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="sht",
        description="Low-resolution facial landmarks with face hallucination "
        "(Supervision-by-Hallucination-and-Transfer).",
    )
    ap.add_argument("--version", action="version", version=f"sht {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("configs", help="list the presets and the configs that ship with sht")
    p.set_defaults(func=cmd_configs)

    p = sub.add_parser("train", help="train DHLN / SHN / FHS from a YAML config or preset name")
    p.add_argument("config", help="YAML file, preset (small, paper, paper-m) or packaged config (e.g. 300w/small)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.steps=500")
    p.add_argument("--out", help="run directory (overrides train.out_dir); an existing run there is resumed")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("train-detector", help="train sht's face detector on composite images (resumable)")
    p.add_argument("config", help="YAML file, preset (small) or packaged config (detector/small)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.steps=500")
    p.add_argument("--out", help="run directory (overrides train.out_dir); an existing run there is resumed")
    p.set_defaults(func=cmd_train_detector)

    p = sub.add_parser("recipe", help="the paper's four stages: DHLN, FPTN, joint SHT, weak SHT (resumable)")
    p.add_argument("config", help="YAML file, preset or packaged config (e.g. 300w/small; see sht configs)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. sht.steps=[3000,1000,500,500]")
    p.add_argument("--out", required=True, help="folder for the stage runs (1-dhln, 2-fptn, 3-joint, 4-weak)")
    p.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    p.set_defaults(func=cmd_recipe)

    p = sub.add_parser("evaluate", help="score a checkpoint on labeled folders at LR sizes")
    p.add_argument("checkpoint")
    p.add_argument(
        "--data",
        action="append",
        required=True,
        help="folder of images with .pts, or NAME:ROOT:SPLIT of a paper dataset (repeatable)",
    )
    p.add_argument("--lr-size", type=int, action="append", help="LR size in pixels (repeatable; default 16)")
    p.add_argument("--out", help="folder for results.json, a CED plot and face panels")
    p.add_argument("--limit", type=int, default=0, help="evaluate at most N faces")
    p.add_argument(
        "--norm",
        default="auto",
        choices=["auto", "inter_ocular", "inter_pupil", "box", "diagonal", "face_width"],
        help="NME normaliser (auto: the dataset's headline one; inter-ocular for plain folders)",
    )
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("data", help="dataset tools: check a dataset folder, label faces with a teacher")
    dsub = p.add_subparsers(dest="data_command", required=True)
    q = dsub.add_parser("check", help="validate a dataset in its native layout: counts per split and every problem")
    q.add_argument("root")
    q.add_argument("--format", required=True, choices=["300w", "wflw", "aflw", "celeba", "helen", "300vw"])
    q.set_defaults(func=cmd_data_check)
    q = dsub.add_parser("label", help="write 68-point .pts beside each face image using a teacher detector")
    q.add_argument("folder")
    q.add_argument("--teacher", default="dlib", choices=["dlib"])
    q.add_argument("--out", help="write the .pts (and links to the images) here instead of beside the images")
    q.add_argument("--overwrite", action="store_true", help="replace existing .pts files")
    q.add_argument("--limit", type=int, default=0, help="label at most N images")
    q.set_defaults(func=cmd_data_label)

    p = sub.add_parser("detect", help="landmarks (and hallucinated faces) for canonical face crops at any size")
    p.add_argument("inputs", nargs="+", help="face-crop images (or photos with --find-faces/--box) or folders")
    p.add_argument("--weights", help="checkpoint (.safetensors); default: the release weights shipped with sht")
    p.add_argument(
        "--find-faces",
        nargs="?",
        const="auto",
        choices=["auto", "haar", "dlib", "sht", "sht-fast"],
        help="inputs are photos: find faces first (auto: sht's own where its weights ship, else OpenCV Haar; dlib's "
        "HOG detector; sht-fast: sht's without its enlarged level for faces under 28 px, about 2.5x faster)",
    )
    p.add_argument(
        "--face-detector",
        metavar="NAME",
        help="photo mode with this face detector: haar, dlib, sht (the shipped weights), sht-fast or a face-detector "
        ".safetensors file (sht train-detector); its boxes and scores are in the JSON and on --save-overlay",
    )
    p.add_argument("--box", action="append", help="photo mode with this face box x0,y0,x1,y1 (repeatable)")
    p.add_argument(
        "--boxes",
        help="photo mode with boxes from a file: JSON {image: [[x0,y0,x1,y1],...]} or lines 'image x0 y0 x1 y1'",
    )
    p.add_argument(
        "--save-overlay",
        help="folder for LR | hallucinated | landmarks-on-input panels; for a video: the overlay video (OUT.mp4)",
    )
    p.add_argument("--show", action="store_true", help="open the overlay panels in an image viewer")
    p.add_argument("--out", required=True, help="output JSON")
    p.add_argument("--save-faces", help="folder for the hallucinated faces (<input stem>.png; video: f<frame>_id<id>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx"],
        help="run the network in PyTorch or in ONNX Runtime (CPU; needs sht[export])",
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads for the network (default: the backend's)")
    p.add_argument(
        "--flip",
        default="auto",
        choices=["auto", "on", "off"],
        help="flip test: average each face with its mirror image (twice the work; auto: the release model's "
        "choice per member, off for --weights)",
    )
    v = p.add_argument_group("video inputs (.mp4, .avi, .mov, .mkv, .webm, .m4v): faces are tracked along the clip")
    v.add_argument("--csv", help="also write the per-frame landmarks as CSV (frame, time, face id, box, score, 68 pts)")
    v.add_argument("--save-face-video", help="LR crop | hallucinated face video of one face (OUT.mp4)")
    v.add_argument("--face-id", type=int, help="the face of --save-face-video (default: the first one found)")
    v.add_argument(
        "--smooth",
        nargs="?",
        const="",
        metavar="min_cutoff=1,beta=5,d_cutoff=1",
        help="add One-Euro smoothed landmarks (landmarks_smoothed; <csv>_smoothed.csv); raw ones are kept",
    )
    v.add_argument("--batch-frames", type=int, default=8, help="frames per batched network call (default 8)")
    v.add_argument(
        "--detect-every",
        type=int,
        metavar="N",
        help="also run the face detector every N frames, for new faces and to move a drifted track back to its face "
        "(default: sht.video.TrackConfig's, 8); 0: only on the first frame and after a loss",
    )
    v.add_argument(
        "--settle",
        metavar="F|off",
        help="predict a tracked face again only when its crop moved more than F of its side (default: "
        "sht.video.TrackConfig's, the release model's training translation); off: two passes on every frame",
    )
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("export", help="export DHLN (not FPTN): release weights and/or ONNX with a dynamic batch")
    p.add_argument("checkpoint")
    p.add_argument("--onnx", help="output .onnx")
    p.add_argument("--weights", help="output .safetensors with the DHLN weights only (fp16 unless --fp32)")
    p.add_argument("--fp32", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="the main job: the shipped model on real and generated tiny faces, as a report")
    p.add_argument("--out", default="demo-out")
    p.add_argument("--weights", help="checkpoint to show instead of the release weights")
    p.add_argument("--train", action="store_true", help="train a small DHLN on generated faces first (minutes)")
    p.add_argument("--steps", type=int, default=1200, help="with --train: training steps")
    p.add_argument("--train-faces", type=int, default=2000, help="with --train: generated training faces")
    p.add_argument("--test-faces", type=int, default=200, help="with --train: generated test faces")
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (*USER_ERRORS, UsageError, FileNotFoundError) as exc:
        print(f"sht {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"sht {args.command}: training diverged: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt as exc:
        print(f"sht {args.command}: interrupted ({exc or 'SIGINT'})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
