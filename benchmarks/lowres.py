"""Low-resolution benchmark on 300-W Helen test: landmarks (NME_io / FR / AUC) and hallucination (PSNR_Y / SSIM_Y).

Methods, all with the same budget of S DHLN optimisation steps (batch 16) per seed and the same schedule:

- SHN, FHS, DHLN: S - J supervised steps (Eq. 4), then J supervised steps at the fine-tuning learning rate.
- SHT:   the same first S - J steps (shared with DHLN), FPTN pre-trained for F steps on true heatmaps (stage 2),
         then J joint steps (stage 3, Eq. 9).
- SHT-i: S - J supervised, J/2 joint, J/2 weak steps with unlabeled face images (stage 4, Eq. 9-10).
- SHT-v: S - J supervised, J/2 joint (shared with SHT-i), J/2 weak steps with unlabeled video frames.

Baselines: bicubic upsampling (faces) and the training-set mean shape (landmarks). Training data: Helen train +
YTF68 train (labeled); validation: YTF68 test; unlabeled: All-Age-Faces crops and the talking-head videos.
Evaluation: canonical 128 px crops, bicubic LR at 16/32/64 px (``sht.evaluation``). Runs resume; re-running
re-evaluates. The block of ``benchmarks/RESULTS.md`` between the ``lowres-<preset>`` markers is rewritten.

    python benchmarks/lowres.py --preset small --steps 1500 --joint 300 --fptn-steps 300 --seeds 0 1
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_block import update_block

from sht.checkpoint import load_checkpoint
from sht.config import Config, load_config
from sht.data.dataset import BatchBuilder, load_sources, mean_shape
from sht.data.pairs import PairBuilder
from sht.data.transforms import tensor_to_image
from sht.evaluation import evaluate_bicubic, evaluate_mean_shape, evaluate_model, load_eval_faces, predict
from sht.infer import Predictor
from sht.models import DHLN, FPTN, count_parameters
from sht.report import draw_landmarks, face_grid, markdown_table, plot_ced
from sht.train import SupervisedStage, Trainer, run_recipe, seed_everything, set_threads
from sht.train.stages import load_labeled

HERE = Path(__file__).resolve().parent
LR_SIZES = (16, 32, 64)
NAMES = {"shn": "SHN", "fhs": "FHS", "dhln": "DHLN", "sht": "SHT", "sht-i": "SHT-i", "sht-v": "SHT-v"}


def base_config(args: argparse.Namespace, seed: int) -> Config:
    d = Path(args.data)
    return load_config(
        args.preset,
        [
            # Helen train is drawn 3x as often as the YTF68 frames, whose "HR" faces are blurry video frames
            f"data.train=[{d / '300w/helen/trainset'},{d / '300w/helen/trainset'},{d / '300w/helen/trainset'},"
            f"{d / 'ytf68/train'}]",
            f"data.val=[{d / 'ytf68/test'}]",
            "data.val_limit=200",
            f"train.seed={seed}",
            f"train.threads={args.threads}",
            f"train.device={args.device}",
            "train.tensorboard=false",
            f"train.progress={args.progress}",
            f"fptn.vgg_weights={d / 'vgg19/vgg19_block1_caffe_bgr.npz'}",
            f"sht.weak.images=[{d / 'aaf128'}]",
            f"sht.weak.limit={args.unlabeled_limit}",
            f"sht.weak.videos=[{d / 'videos'}]",
            "sht.weak.crop=detector",
            *args.override,
        ],
    )


def done(run: Path, steps: int) -> bool:
    side = run / "checkpoints" / "last.json"
    return side.exists() and json.loads(side.read_text())["step"] >= steps


def supervised(cfg: Config, run: Path, steps: int, lr: float, init: Path | None, labeled) -> Path:
    """A supervised DHLN/SHN/FHS run of ``steps`` steps (optionally continuing another run's weights)."""
    c = copy.deepcopy(cfg)
    c.train.steps, c.train.lr = steps, lr
    c.train.eval_every = max(steps // 3, 1)
    c.train.warmup_steps = min(c.train.warmup_steps, max(steps // 10, 1))
    ckpt = run / "checkpoints" / "last.safetensors"
    if not done(run, steps):
        seed_everything(c.train.seed)
        stage = SupervisedStage(c, torch.device(c.train.device), train_faces=labeled[0], val_faces=labeled[1])
        if init is not None and not ckpt.exists():
            stage.init_from(init)
        Trainer(c, stage, run).fit()
    return ckpt


def train_seed(args: argparse.Namespace, seed: int) -> dict[str, Path]:
    """Train every method for one seed; returns each method's final checkpoint."""
    cfg = base_config(args, seed)
    set_threads(cfg.train.threads)
    out = Path(args.out) / f"s{seed}"
    s, j, f = args.steps, args.joint, args.fptn_steps
    labeled = load_labeled(cfg)
    ckpts: dict[str, Path] = {}
    for m in ("shn", "fhs", "dhln"):
        if m not in args.methods and not (m == "dhln" and set(args.methods) & {"sht", "sht-i", "sht-v"}):
            continue
        c = copy.deepcopy(cfg)
        c.model.streams = m
        first = supervised(c, out / f"{m}-1", s - j, c.train.lr, None, labeled)
        ckpts[m] = supervised(c, out / m, j, c.sht.dhln_lr, first, labeled)
    if set(args.methods) & {"sht", "sht-i", "sht-v"}:
        c = copy.deepcopy(cfg)
        c.sht.steps = [s - j, f, j, 0]
        runs = run_recipe(c, out / "sht", stages=[2, 3], init={1: out / "dhln-1"})
        ckpts["sht"] = runs[3] / "checkpoints" / "last.safetensors"
        half = copy.deepcopy(cfg)
        half.sht.steps = [s - j, f, j // 2, j - j // 2]
        shared = {1: out / "dhln-1", 2: runs[2]}
        if set(args.methods) & {"sht-i", "sht-v"}:
            run_recipe(half, out / "half", stages=[3], init=shared)
        for m, key in (("sht-i", "images"), ("sht-v", "videos")):
            if m in args.methods:
                h = copy.deepcopy(half)
                h.sht.weak.images = half.sht.weak.images if key == "images" else []
                h.sht.weak.videos = half.sht.weak.videos if key == "videos" else []
                runs_m = run_recipe(h, out / m, stages=[4], init={**shared, 3: out / "half" / "3-joint"})
                ckpts[m] = runs_m[4] / "checkpoints" / "last.safetensors"
    return ckpts


def seconds(run_dirs: list[Path]) -> float:
    """Training wall time recorded in the runs' last checkpoints."""
    total = 0.0
    for r in run_dirs:
        side = r / "checkpoints" / "last.json"
        if side.exists():
            total += float(json.loads(side.read_text()).get("seconds", 0.0))
    return total


def score_detect(checkpoint: Path, data: Path) -> str:
    tool = data.parent / "tools" / "score_detect.py"
    sht = Path(sys.executable).parent / "sht"
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


def transfer_figure(ckpt: Path, cfg: Config, test, path: Path) -> None:
    """Paper Fig. 7: condition / target / face transferred by FPTN with DHLN's own heatmaps (no labels)."""
    pred = Predictor.from_checkpoint(ckpt)
    fptn = FPTN(cfg.fptn, cfg.model.num_landmarks, cfg.model.face_size)
    load_checkpoint(ckpt, {"fptn": fptn})
    fptn.eval()
    pairs = PairBuilder(BatchBuilder(test, cfg.model.input_size, pred.codec, [16]), cfg.sht.pairs)
    n = 6
    batch = pairs.build(torch.linspace(0, len(test) - 1, n).round().long(), torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = pred.model.eval()(batch.input, batch.base)
        hm = out.final_heatmaps
        gen = fptn(out.face[:n], hm[:n], hm[n:])
    rows = []
    for i in range(n):
        rows.append(
            [
                tensor_to_image(batch.input[i]),
                tensor_to_image(out.face[i]),
                tensor_to_image(batch.hr[i]),
                tensor_to_image(batch.hr[n + i]),
                tensor_to_image(gen[i]),
            ]
        )
    face_grid(rows, ["condition LR", "condition SR", "condition HR", "target HR", "transferred"], path)


def paper_ordering(results: dict) -> str:
    """Whether the paper's ordering at 16 px holds on the seed means: NME SHN > DHLN > SHT > SHT-i and
    PSNR FHS < DHLN < SHT."""
    out = []
    for key, chain, sign, unit in (
        ("nme", ["shn", "dhln", "sht", "sht-i"], ">", "%"),
        ("psnr", ["fhs", "dhln", "sht"], "<", " dB"),
    ):
        have = [m for m in chain if m in results and key in results[m][16]]
        if len(have) < 2:
            continue
        means = {m: float(np.mean(results[m][16][key])) for m in have}
        links = []
        for a, b in zip(have, have[1:], strict=False):
            holds = means[a] > means[b] if sign == ">" else means[a] < means[b]
            rel = sign if holds else f"**not {sign}**"
            links.append(f"{NAMES[a]} {means[a]:.2f}{unit} {rel} {NAMES[b]} {means[b]:.2f}{unit}")
        out.append(f"{key.upper()} at 16 px (mean over seeds): " + "; ".join(links))
    return "Paper ordering check. " + ". ".join(out) + "."


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=1500, help="S: DHLN steps per method")
    ap.add_argument("--joint", type=int, default=300, help="J: of those, continuation/joint/weak steps")
    ap.add_argument("--fptn-steps", type=int, default=300, help="F: FPTN pre-training steps (stage 2)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=list(NAMES), choices=list(NAMES))
    ap.add_argument("--unlabeled-limit", type=int, default=3000)
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

    t_start = time.time()
    all_ckpts = {seed: train_seed(args, seed) for seed in args.seeds}
    t_train = time.time() - t_start
    cfg = base_config(args, args.seeds[0])
    test = load_eval_faces([str(test_dir)], cfg.model.face_size, cfg.data.margin)
    train = load_sources(
        sorted(set(cfg.data.train)), cfg.model.face_size, cfg.data.margin, 1.0, cache_dir=cfg.data.cache_dir
    )
    results: dict[str, dict[int, dict[str, list[float]]]] = {}
    curves: dict[str, np.ndarray] = {}
    for seed, ckpts in all_ckpts.items():
        for m in args.methods:
            pred = Predictor.from_checkpoint(ckpts[m], args.device)
            for s, r in evaluate_model(pred.model, test, pred.codec, LR_SIZES, device=args.device).items():
                for k, v in r.summary().items():
                    results.setdefault(m, {}).setdefault(s, {}).setdefault(k, []).append(v)
                if r.nme is not None and seed == args.seeds[0] and s == 16:
                    curves[NAMES[m]] = r.nme
    bic = evaluate_bicubic(test, LR_SIZES)
    mean = evaluate_mean_shape(test, mean_shape(train), LR_SIZES)
    curves["mean shape"] = mean[16].nme

    fig = HERE / "figures"
    plot_ced(curves, fig / f"lowres_{args.preset}_ced_16px.png", title=f"Helen test, 16 px LR ({args.preset})")
    first = all_ckpts[args.seeds[0]]
    shown = [m for m in ("fhs", "dhln", "sht", "sht-i", "sht-v") if m in args.methods]
    preds = {m: Predictor.from_checkpoint(first[m]) for m in shown}
    builder = BatchBuilder(test, cfg.model.input_size, next(iter(preds.values())).codec, [16])
    idx = torch.linspace(0, len(test) - 1, 6).round().long()
    batch = builder.build(idx, lr_size=16)
    outs = {m: predict(p.model, batch.input, p.codec, base=batch.base) for m, p in preds.items()}
    rows = []
    for i in range(len(idx)):
        row = [tensor_to_image(batch.input[i]).resize((16, 16)), tensor_to_image(batch.base[i])]
        for m in shown:
            pts, face = outs[m]
            img = tensor_to_image(face[i])
            row.append(draw_landmarks(img, pts[i].numpy()) if pts is not None else img)
        rows.append([*row, tensor_to_image(batch.hr[i])])
    face_grid(rows, ["LR 16px", "bicubic", *[NAMES[m] for m in shown], "HR"], fig / f"lowres_{args.preset}_faces.png")
    if "sht-i" in first:
        transfer_figure(first["sht-i"], cfg, test, fig / f"lowres_{args.preset}_transfer.png")

    rows = []
    for s in LR_SIZES:
        b, m_ = bic[s].summary(), mean[s].summary()
        rows.append([s, "bicubic", "-", "-", "-", f"{b['psnr']:.2f}", f"{b['ssim']:.4f}"])
        rows.append([s, "mean shape", f"{m_['nme']:.2f}", f"{m_['fr']:.1f}", f"{m_['auc']:.3f}", "-", "-"])
        for m in args.methods:
            r = results[m][s]
            rows.append(
                [
                    s,
                    NAMES[m],
                    fmt(r["nme"], 2) if "nme" in r else "-",
                    fmt(r["fr"], 1) if "fr" in r else "-",
                    fmt(r["auc"], 3) if "auc" in r else "-",
                    fmt(r["psnr"], 2) if "psnr" in r else "-",
                    fmt(r["ssim"], 4) if "ssim" in r else "-",
                ]
            )
    table = markdown_table(["LR px", "method", "NME_io %", "FR10 %", "AUC10", "PSNR_Y dB", "SSIM_Y"], rows)
    params = {
        m: count_parameters(DHLN(load_config(args.preset, [f"model.streams={m}"]).model))
        for m in ("shn", "fhs", "dhln")
    }
    cross = {m: score_detect(first[m], data) for m in ("dhln", "sht") if m in first}
    seeds = " ".join(map(str, args.seeds))
    cmd = (
        f"python benchmarks/lowres.py --preset {args.preset} --steps {args.steps} --joint {args.joint} "
        f"--fptn-steps {args.fptn_steps} --seeds {seeds} --unlabeled-limit {args.unlabeled_limit}"
    )
    if args.methods != list(NAMES):
        cmd += " --methods " + " ".join(args.methods)
    if args.override:
        cmd += " --override " + " ".join(args.override)
    first_dir = Path(args.out) / f"s{args.seeds[0]}"
    ordering = paper_ordering(results)
    timing = {
        "SHN": seconds([first_dir / "shn-1", first_dir / "shn"]),
        "FHS": seconds([first_dir / "fhs-1", first_dir / "fhs"]),
        "DHLN": seconds([first_dir / "dhln-1", first_dir / "dhln"]),
        "FPTN stage 2": seconds([first_dir / "sht" / "2-fptn"]),
        "SHT joint": seconds([first_dir / "sht" / "3-joint"]),
        "SHT-i weak": seconds([first_dir / "sht-i" / "4-weak"]),
        "SHT-v weak": seconds([first_dir / "sht-v" / "4-weak"]),
    }
    lines = [
        f"Preset `{args.preset}` ({', '.join(f'{NAMES[m]} {v / 1e6:.3f}M' for m, v in params.items())} parameters). "
        f"Budget per method and seed: S = {args.steps} DHLN steps of batch {cfg.train.batch_size} "
        f"({args.steps * cfg.train.batch_size} face samples); the last J = {args.joint} are the continuation "
        f"(SHN/FHS/DHLN, supervised at lr {cfg.sht.dhln_lr:g}) or SHT's joint/weak stages (same lr); FPTN "
        f"pre-trained {args.fptn_steps} steps on true heatmaps. Seeds {args.seeds}: mean ± std over seeds. "
        f"Labeled training data: Helen train (sampled 3x) + YTF68 train ({len(train)} distinct faces), LR sizes "
        f"{cfg.data.lr_sizes} mixed; unlabeled: {args.unlabeled_limit} All-Age-Faces crops (SHT-i), 13 talking-head "
        f"videos x {cfg.sht.weak.frames_per_video} frames (SHT-v), crops located by Haar + the model's own landmarks. "
        f"Test: Helen test ({len(test)} faces).",
        "",
        f"Machine: {platform.machine()} CPU, {torch.get_num_threads()} threads ({args.device}); whole job "
        f"{t_train / 60:.0f} min of training; one seed: "
        + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timing.items())
        + ".",
        "",
        table,
        "",
        ordering,
        "",
        "Cross-check with the independent scorer (`../shared/tools/score_detect.py ... 16 --faces`, seed "
        f"{args.seeds[0]}): "
        + "; ".join(
            f"{NAMES[m]}: `{v}` (here: NME_io {results[m][16]['nme'][0]:.2f}%, PSNR_Y {results[m][16]['psnr'][0]:.2f}, "
            f"SSIM_Y {results[m][16]['ssim'][0]:.4f})"
            for m, v in cross.items()
        )
        + ".",
        "",
        f"![CED 16 px](figures/lowres_{args.preset}_ced_16px.png)",
        "",
        "Figures written by the run but not committed, because they show Helen test faces (no dataset image is\n"
        f"redistributed here): `figures/lowres_{args.preset}_faces.png` (LR / bicubic / FHS / DHLN / SHT / SHT-i / "
        "SHT-v / HR, like\nthe paper's Fig. 6) and "
        f"`figures/lowres_{args.preset}_transfer.png` (condition / target / transferred, like Fig. 7).",
    ]
    lines += ["", f"Regenerate: `{cmd}`"]
    block = "\n".join(lines)
    update_block(args.results, f"lowres-{args.preset}", block)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps({"results": results, "score_detect": cross}, indent=1))
    print(block)


if __name__ == "__main__":
    main()
