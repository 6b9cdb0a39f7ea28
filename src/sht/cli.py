"""Command-line interface: ``sht train | recipe | evaluate | detect | demo``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from .config import ConfigError
from .data.formats import IMAGE_SUFFIXES, DataError
from .train.checkpoint import CheckpointError
from .train.trainer import TrainingDiverged


class UsageError(ValueError):
    """A command-line argument that cannot be used."""


def _expand_inputs(items: list[str]) -> list[Path]:
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


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .train import train

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"train.out_dir={args.out}")
    cfg = load_config(args.config, overrides)
    metrics = train(cfg)
    print(json.dumps({k: round(v, 5) for k, v in metrics.items()}, indent=1))
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


def cmd_detect(args: argparse.Namespace) -> int:
    from .data.formats import load_image
    from .infer import Predictor

    if args.weights is None:
        raise UsageError("--weights is required (no release weights are installed with this build)")
    paths = _expand_inputs(args.inputs)
    predictor = Predictor.from_checkpoint(args.weights, device=args.device)
    images, good, results = [], [], []
    failed = 0
    for p in paths:
        try:
            images.append(load_image(p))
            good.append(p)
        except DataError as exc:
            failed += 1
            print(f"sht detect: skipped {exc}", file=sys.stderr)
            results.append({"image": str(p), "error": str(exc)})
    faces_dir = Path(args.save_faces) if args.save_faces else None
    if faces_dir is not None and images:
        faces_dir.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for p, im, pred in zip(good, images, predictor.predict(images, args.batch_size), strict=True):
        entry: dict[str, object] = {"image": str(p), "width": im.size[0], "height": im.size[1]}
        if pred.landmarks is not None:
            entry["landmarks"] = [[round(float(x), 3), round(float(y), 3)] for x, y in pred.landmarks]
            entry["scores"] = [round(float(s), 4) for s in pred.scores]
        if faces_dir is not None and pred.face is not None:
            stem = p.stem
            k = 1
            while stem in used:
                stem, k = f"{p.stem}_{k}", k + 1
            used.add(stem)
            fp = faces_dir / f"{stem}.png"
            pred.face.save(fp)
            entry["face"] = str(fp)
        results.append(entry)
    doc = {
        "weights": str(args.weights),
        "convention": "x right, y down, pixels of each input image, image spans [0,W]x[0,H]",
        "model": {
            "streams": predictor.config.model.streams,
            "input_size": predictor.input_size,
            "face_size": predictor.face_size,
        },
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1))
    print(f"sht detect: {len(good)} image(s) -> {out}" + (f"; {failed} skipped (see stderr)" if failed else ""))
    return 1 if failed else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(args.out, steps=args.steps, train_faces=args.train_faces, test_faces=args.test_faces)
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

    p = sub.add_parser("train", help="train DHLN / SHN / FHS from a YAML config or preset name")
    p.add_argument("config", help="YAML file or preset name (small, paper, paper-m)")
    p.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. train.steps=500")
    p.add_argument("--out", help="run directory (overrides train.out_dir); an existing run there is resumed")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recipe", help="the paper's four stages: DHLN, FPTN, joint SHT, weak SHT (resumable)")
    p.add_argument("config", help="YAML file or preset name")
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
    p.add_argument("inputs", nargs="+", help="face-crop images or folders of them")
    p.add_argument("--weights", help="checkpoint (.safetensors)")
    p.add_argument("--out", required=True, help="output JSON")
    p.add_argument("--save-faces", help="folder for the hallucinated faces (<input stem>.png)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("demo", help="train a small DHLN on generated faces and write a report (the main job)")
    p.add_argument("--out", default="demo-out")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--train-faces", type=int, default=2000)
    p.add_argument("--test-faces", type=int, default=200)
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ConfigError, DataError, CheckpointError, UsageError, FileNotFoundError) as exc:
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
