"""Low-resolution benchmark on 300-W Helen test: landmarks (NME_io / FR / AUC) and hallucination (PSNR_Y / SSIM_Y).

Trains SHN (landmarks only), FHS (face only) and DHLN with the same preset, data and budget, evaluates them with
bicubic and the training mean shape as baselines at 16, 32 and 64 px, and rewrites its block of
``benchmarks/RESULTS.md`` plus figures under ``benchmarks/figures``. Runs resume: re-running continues unfinished
training and re-evaluates.

    python benchmarks/lowres.py --data ../shared/data --preset small --steps 2400 --seeds 0

The canonical protocol is the one of ``sht.evaluation`` (canonical 128 px crop, bicubic LR, 8-bit rounding); the
independent scorer ``../shared/tools/score_detect.py`` is run on the DHLN checkpoint as a cross-check.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sht.config import load_config
from sht.data.dataset import load_sources, mean_shape
from sht.evaluation import evaluate_bicubic, evaluate_mean_shape, evaluate_model, face_panels, load_eval_faces
from sht.infer import Predictor
from sht.models import DHLN, count_parameters
from sht.report import face_grid, markdown_table, plot_ced
from sht.train import SupervisedStage, Trainer, seed_everything, set_threads

HERE = Path(__file__).resolve().parent
LR_SIZES = (16, 32, 64)
METHODS = {"shn": "SHN (landmarks only)", "fhs": "FHS (face only)", "dhln": "DHLN"}


def train_method(method: str, seed: int, args: argparse.Namespace) -> tuple[Path, float]:
    d = Path(args.data)
    out = Path(args.out) / f"{method}-s{seed}"
    cfg = load_config(
        args.preset,
        [
            f"model.streams={method}",
            f"data.train=[{d / '300w/helen/trainset'},{d / 'ytf68/train'}]",
            f"data.val=[{d / 'ytf68/test'}]",
            "data.val_limit=200",
            f"train.steps={args.steps}",
            f"train.seed={seed}",
            f"train.threads={args.threads}",
            f"train.eval_every={max(args.steps // 4, 1)}",
            "train.tensorboard=false",
            f"train.progress={args.progress}",
            *args.override,
        ],
    )
    done = out / "checkpoints" / "last.json"
    if done.exists() and json.loads(done.read_text())["step"] >= args.steps:
        return out / "checkpoints" / "last.safetensors", json.loads((out / "timing.json").read_text())["seconds"]
    set_threads(cfg.train.threads)
    seed_everything(seed)
    stage = SupervisedStage(cfg, torch.device(args.device))
    t0 = time.time()
    Trainer(cfg, stage, out).fit()
    seconds = time.time() - t0
    prev = out / "timing.json"
    if prev.exists():
        seconds += json.loads(prev.read_text())["seconds"]
    prev.write_text(json.dumps({"seconds": seconds}))
    return out / "checkpoints" / "last.safetensors", seconds


def score_detect(checkpoint: Path, data: Path, sht: Path) -> str:
    tool = data.parent / "tools" / "score_detect.py"
    if not tool.exists():
        return "score_detect.py not found"
    r = subprocess.run(
        [
            sys.executable,
            str(tool),
            str(sht),
            str(data / "300w/helen/testset"),
            "16",
            "--faces",
            "--weights",
            str(checkpoint),
        ],
        capture_output=True,
        text=True,
    )
    return r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"failed: {r.stderr[-300:]}"


def fmt(vals: list[float], digits: int) -> str:
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals):.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--out", default=str(HERE / "runs" / "lowres"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value config overrides")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    data = Path(args.data)
    test_dir = data / "300w" / "helen" / "testset"
    if not test_dir.is_dir():
        sys.exit(f"benchmark data not found: {test_dir} (point --data at the shared data folder)")

    cfg = load_config(args.preset)
    test = load_eval_faces([str(test_dir)], cfg.model.face_size, cfg.data.margin)
    train = load_sources(
        [str(data / "300w/helen/trainset"), str(data / "ytf68/train")],
        cfg.model.face_size,
        cfg.data.margin,
        1.0,
    )
    results: dict[str, dict[int, dict[str, list[float]]]] = {}
    curves: dict[str, np.ndarray] = {}
    timings: dict[str, list[float]] = {}
    ckpts: dict[str, Path] = {}
    for method in args.methods:
        for seed in args.seeds:
            ckpt, seconds = train_method(method, seed, args)
            timings.setdefault(method, []).append(seconds)
            ckpts.setdefault(method, ckpt)
            pred = Predictor.from_checkpoint(ckpt, args.device)
            res = evaluate_model(pred.model, test, pred.codec, LR_SIZES, device=args.device)
            for s, r in res.items():
                for k, v in r.summary().items():
                    results.setdefault(method, {}).setdefault(s, {}).setdefault(k, []).append(v)
                if r.nme is not None and seed == args.seeds[0]:
                    curves[f"{METHODS[method]} {s}px"] = r.nme
    bic = evaluate_bicubic(test, LR_SIZES)
    mean = evaluate_mean_shape(test, mean_shape(train), LR_SIZES)
    curves["mean shape"] = mean[16].nme

    fig_dir = HERE / "figures"
    plot_ced(
        {k: v for k, v in curves.items() if "16px" in k or k == "mean shape"},
        fig_dir / "lowres_ced_16px.png",
        title="Helen test, 16 px LR",
    )
    plot_ced(
        {k: v for k, v in curves.items() if "DHLN" in k or k == "mean shape"},
        fig_dir / "lowres_ced_dhln.png",
        title="DHLN on Helen test by LR size",
    )
    if "dhln" in ckpts:
        pred = Predictor.from_checkpoint(ckpts["dhln"], args.device)
        face_grid(
            face_panels(pred.model, test, pred.codec, 16, count=6),
            ["LR 16px", "bicubic", "DHLN", "HR"],
            fig_dir / "lowres_faces_16px.png",
        )

    rows = []
    for s in LR_SIZES:
        b, m = bic[s].summary(), mean[s].summary()
        rows.append([s, "bicubic", "-", "-", "-", f"{b['psnr']:.2f}", f"{b['ssim']:.4f}"])
        rows.append([s, "mean shape", f"{m['nme']:.2f}", f"{m['fr']:.1f}", f"{m['auc']:.3f}", "-", "-"])
        for method in args.methods:
            r = results[method][s]
            rows.append(
                [
                    s,
                    METHODS[method],
                    fmt(r["nme"], 2) if "nme" in r else "-",
                    fmt(r["fr"], 1) if "fr" in r else "-",
                    fmt(r["auc"], 3) if "auc" in r else "-",
                    fmt(r["psnr"], 2) if "psnr" in r else "-",
                    fmt(r["ssim"], 4) if "ssim" in r else "-",
                ]
            )
    table = markdown_table(["LR px", "method", "NME_io %", "FR10 %", "AUC10", "PSNR_Y dB", "SSIM_Y"], rows)
    params = {m: count_parameters(DHLN(load_config(args.preset, [f"model.streams={m}"]).model)) for m in METHODS}
    sht = Path(sys.executable).parent / "sht"
    cross = score_detect(ckpts["dhln"], data, sht) if "dhln" in ckpts else "-"
    ours16 = results.get("dhln", {}).get(16, {})
    seeds = " ".join(map(str, args.seeds))
    cmd = f"python benchmarks/lowres.py --preset {args.preset} --steps {args.steps} --seeds {seeds}"
    if args.override:
        cmd += " --override " + " ".join(args.override)
    block = "\n".join(
        [
            f"Preset `{args.preset}`, {args.steps} steps x batch {cfg.train.batch_size} per model "
            f"({args.steps * cfg.train.batch_size} face samples), seeds {args.seeds}, "
            "trained on Helen train + YTF68 train "
            f"({len(train)} faces), LR sizes {cfg.data.lr_sizes} mixed; tested on Helen test ({len(test)} faces). "
            f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, {args.device}; "
            "wall time per model: "
            + ", ".join(f"{METHODS[m]} {np.mean(t) / 60:.1f} min" for m, t in timings.items())
            + ".",
            "",
            "Parameters: " + ", ".join(f"{METHODS[m]} {params[m] / 1e6:.3f}M" for m in METHODS) + ".",
            "",
            table,
            "",
            "Cross-check with the independent scorer (`../shared/tools/score_detect.py`, DHLN seed "
            f"{args.seeds[0]}, 16 px): `{cross}`; this benchmark: NME_io "
            + (
                f"{ours16['nme'][0]:.2f}%, PSNR_Y {ours16['psnr'][0]:.2f}, SSIM_Y {ours16['ssim'][0]:.4f}"
                if ours16
                else "-"
            )
            + ".",
            "",
            "![CED 16 px](figures/lowres_ced_16px.png) ![CED DHLN](figures/lowres_ced_dhln.png)",
            "",
            "![faces](figures/lowres_faces_16px.png)",
            "",
            f"Regenerate: `{cmd}`",
        ]
    )
    res_path = Path(args.results)
    text = res_path.read_text() if res_path.exists() else "# Benchmark results\n"
    tag = f"lowres-{args.preset}"
    new = f"<!-- {tag}:begin -->\n{block}\n<!-- {tag}:end -->"
    pattern = re.compile(rf"<!-- {tag}:begin -->.*?<!-- {tag}:end -->", re.S)
    text = pattern.sub(lambda _m: new, text) if pattern.search(text) else text.rstrip() + "\n\n" + new + "\n"
    res_path.write_text(text)
    (Path(args.out) / "results.json").write_text(
        json.dumps({"results": results, "timings": timings, "score_detect": cross}, indent=1, default=float)
    )
    print(block)


if __name__ == "__main__":
    main()
