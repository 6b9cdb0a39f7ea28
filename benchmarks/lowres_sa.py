"""Issue 13's benchmark rows on 300-W Helen test at 16/32/64 px: JASRNet, DHLN + SA, DHLN + SA + GHCU, and the
noisy-label setting (DHLN, DHLN + SA, DHLN + SA + GHCU with label noise 0.03 and 0.06), per seed.

A *unit* is one (method, seed, noise): it trains (resuming any finished or interrupted run), evaluates the last
checkpoint on Helen test and writes ``<results>/units/<preset>-<method>-n<noise>-s<seed>.json`` with rows in
``benchmarks/lowres.py``'s schema (``method, lr, seed, nme_io, fr10, auc10, psnr_y, ssim_y, noise, train_min``);
a unit whose file exists is skipped. The lead merges the units into lowres.py's table.

Budget and data, the same for every unit (``--steps`` S, DHLN small's 1500 by default): S optimisation steps of the
preset's batch and schedule. Labeled training data as lowres.py at labeled fraction 1: Helen train (drawn 3x) +
YTF68 train, minus a validation slice carved from Helen train (every ``--val-every``-th face, never trained on;
it only feeds the logged validation metrics: the last checkpoint is scored). Label noise (``data.label_noise``)
moves the jaw and nose-bridge points of every training and validation face, drawn once per face (seed 0), so the
3 Helen copies share their noisy labels. DHLN+SA: the S steps with Semantic Alignment (``sa.*`` defaults); GHCU:
``ghcu.steps`` more steps on that run's frozen backbone, its time added to the SA run's. JASRNet: ``small``'s
JASRNet with the spec's heatmap sigma (4 HR px = 0.5 heatmap px) and the same optimiser as DHLN small.

    python benchmarks/lowres_sa.py --preset small --steps 1500 --seeds 0 1            # every unit
    python benchmarks/lowres_sa.py --methods JASRNet --seeds 0                        # one method
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from sht.config import Config, load_config
from sht.data.dataset import FaceSet, load_sources
from sht.data.noise import with_label_noise
from sht.evaluation import evaluate_model, load_eval_faces
from sht.infer import Predictor
from sht.train import SupervisedStage, Trainer, seed_everything, set_threads
from sht.train.semantic_alignment import SemanticAlignmentStage, train_ghcu

HERE = Path(__file__).resolve().parent
LR_SIZES = (16, 32, 64)
METHODS = ("JASRNet", "DHLN", "DHLN+SA", "DHLN+SA+GHCU")
NOISES = (0.0, 0.03, 0.06)
# the rows issue 13 asks for: clean JASRNet / SA / SA+GHCU (clean DHLN is lowres.py's row) and all three DHLN
# variants at both noise levels
UNITS = [("JASRNet", 0.0), ("DHLN+SA", 0.0), ("DHLN+SA+GHCU", 0.0)] + [
    (m, n) for n in (0.03, 0.06) for m in ("DHLN", "DHLN+SA", "DHLN+SA+GHCU")
]
JASRNET = ["model.arch=jasrnet", "heatmap.sigma=0.5"]  # jasrnet-spec §2: sigma 4 HR px on 16x16 heatmaps


def method_config(args: argparse.Namespace, method: str, seed: int, noise: float) -> Config:
    """The unit's config: the preset, the budget, the method's switches and the label noise."""
    extra = JASRNET if method == "JASRNet" else []
    return load_config(
        args.preset,
        [
            f"train.steps={args.steps}",
            f"train.seed={seed}",
            f"train.threads={args.threads}",
            f"train.device={args.device}",
            "train.tensorboard=false",
            f"train.progress={str(args.progress).lower()}",
            f"train.eval_every={max(args.steps // 3, 1)}",
            f"data.label_noise={noise}",
            f"sa.enabled={str('SA' in method).lower()}",
            *([f"ghcu.steps={args.ghcu_steps}"] if args.ghcu_steps is not None else []),
            *extra,
            *args.override,
        ],
    )


def carve_validation(faces: FaceSet, every: int) -> tuple[FaceSet, FaceSet]:
    """(training part, validation part): every ``every``-th face (by position) is held out."""
    idx = torch.arange(len(faces))
    held = idx % every == 0
    return faces.subset(idx[~held]), faces.subset(idx[held])


def labeled_data(args: argparse.Namespace, cfg: Config) -> tuple[FaceSet, FaceSet]:
    """Training faces (Helen train part x3 + YTF68 train) and the validation slice of Helen train, both with the
    config's label noise (drawn once per distinct face)."""
    d, m = Path(args.data), cfg.model

    def load(src: str) -> FaceSet:
        return load_sources([src], m.face_size, cfg.data.margin, cfg.data.context, cache_dir=cfg.data.cache_dir)

    helen, ytf = load(str(d / "300w/helen/trainset")), load(str(d / "ytf68/train"))
    if args.train_limit:
        helen, ytf = (f.subset(range(min(args.train_limit, len(f)))) for f in (helen, ytf))
    if cfg.data.label_noise > 0:
        helen = with_label_noise(helen, cfg.data.label_noise, cfg.data.label_noise_seed)
        ytf = with_label_noise(ytf, cfg.data.label_noise, cfg.data.label_noise_seed + 1)
    train, val = carve_validation(helen, args.val_every)
    return FaceSet.concat([train, train, train, ytf]), val


def _done(run: Path, steps: int) -> bool:
    side = run / "checkpoints" / "last.json"
    return side.exists() and json.loads(side.read_text())["step"] >= steps


def _seconds(*runs: Path) -> float:
    return sum(float(json.loads((r / "checkpoints" / "last.json").read_text()).get("seconds", 0.0)) for r in runs)


def train_backbone(cfg: Config, run: Path, faces: tuple[FaceSet, FaceSet]) -> Path:
    """The unit's DHLN / DHLN+SA / JASRNet run (resumed if interrupted, skipped if finished)."""
    if not _done(run, cfg.train.steps):
        seed_everything(cfg.train.seed)
        kind = SemanticAlignmentStage if cfg.sa.enabled else SupervisedStage
        stage = kind(cfg, torch.device(cfg.train.device), train_faces=faces[0], val_faces=faces[1])
        Trainer(cfg, stage, run).fit()
    return run / "checkpoints" / "last.safetensors"


def run_unit(method: str, seed: int, noise: float, args: argparse.Namespace) -> list[dict]:
    """Train and evaluate one unit; returns its rows (one per LR size)."""
    cfg = method_config(args, method, seed, noise)
    set_threads(cfg.train.threads)
    out = Path(args.out) / args.preset / f"n{noise:g}" / f"s{seed}"
    faces = labeled_data(args, cfg)
    backbone = "SA" if "SA" in method else method
    run = out / backbone.lower()
    ckpt = train_backbone(cfg, run, faces)
    runs = [run]
    if method.endswith("GHCU"):
        ckpt = train_ghcu(cfg, ckpt, out / "ghcu", faces[0], faces[1])
        runs.append(out / "ghcu")
    minutes = _seconds(*runs) / 60
    test = load_eval_faces([str(Path(args.data) / "300w/helen/testset")], cfg.model.face_size, cfg.data.margin)
    if args.test_limit:
        test = test.subset(range(min(args.test_limit, len(test))))
    pred = Predictor.from_checkpoint(ckpt, args.device)
    rows = []
    for s, r in evaluate_model(pred.model, test, pred.codec, LR_SIZES, device=args.device).items():
        m = r.summary()
        rows.append(
            {
                "method": method,
                "lr": s,
                "seed": seed,
                "nme_io": m["nme"],
                "fr10": m["fr"],
                "auc10": m["auc"],
                "psnr_y": m.get("psnr"),
                "ssim_y": m.get("ssim"),
                "noise": noise,
                "train_min": round(minutes, 2),
            }
        )
    return rows


def unit_path(args: argparse.Namespace, method: str, seed: int, noise: float) -> Path:
    return Path(args.results) / "units" / f"{args.preset}-{method}-n{noise:g}-s{seed}.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=1500, help="S: optimisation steps of every backbone")
    ap.add_argument("--ghcu-steps", type=int, default=None, help="GHCU steps (default: the config's ghcu.steps)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--noises", type=float, nargs="+", default=list(NOISES))
    ap.add_argument("--val-every", type=int, default=10, help="hold out every n-th Helen train face for validation")
    ap.add_argument("--train-limit", type=int, default=0, help="dry runs: use only this many Helen train faces")
    ap.add_argument("--test-limit", type=int, default=0, help="dry runs: score only this many Helen test faces")
    ap.add_argument("--out", default=str(HERE / "runs" / "lowres_sa"))
    ap.add_argument("--results", default=str(HERE / "results"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--force", action="store_true", help="re-evaluate units whose JSON exists")
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value config overrides")
    args = ap.parse_args()
    if not (Path(args.data) / "300w/helen/testset").is_dir():
        sys.exit(f"benchmark data not found under {args.data} (point --data at the shared data folder)")
    units = [(m, n) for m, n in UNITS if m in args.methods and n in args.noises]
    for seed in args.seeds:
        for method, noise in units:
            path = unit_path(args, method, seed, noise)
            if path.exists() and not args.force:
                print(f"{path.name}: done")
                continue
            t0 = time.time()
            rows = run_unit(method, seed, noise, args)
            doc = {
                "preset": args.preset,
                "labeled_fraction": 1.0,
                "seeds": [seed],
                "steps": args.steps,
                "command": " ".join(sys.argv),
                "rows": rows,
            }
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1))
            tmp.replace(path)
            r16 = next(r for r in rows if r["lr"] == 16)
            print(
                f"{path.name}: NME_io@16 {r16['nme_io']:.2f} % FR10 {r16['fr10']:.1f} % "
                f"train {r16['train_min']:.1f} min (unit {(time.time() - t0) / 60:.1f} min)",
                flush=True,
            )


if __name__ == "__main__":
    main()
