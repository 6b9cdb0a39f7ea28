"""Issue 13's benchmark rows on 300-W Helen test at 16/32/64 px: JASRNet, DHLN + SA, DHLN + SA + GHCU, and the
noisy-label setting (DHLN, DHLN + SA, DHLN + SA + GHCU with label noise 0.03 and 0.06), per seed.

A *unit* is one (method, seed, noise): it trains (resuming any finished or interrupted run), evaluates the last
checkpoint on Helen test and writes ``<results>/units/<preset>-<method>-n<noise>-s<seed>.json`` with rows in
``benchmarks/lowres.py``'s schema (``method, lr, seed, nme_io, fr10, auc10, psnr_y, ssim_y, noise, train_min``);
a unit whose file exists is skipped.

Budget and data, the same for every unit (``--steps`` S, 500 by default: the S of ``benchmarks/lowres.py``, so both
tables share a budget; DHLN small's own schedule is 1500): S optimisation steps of the preset's batch and schedule.
Labeled training data: all labels (F = 1) of Helen train (drawn 3x) + YTF68 train, minus a validation slice
carved from Helen train (every ``--val-every``-th face, never trained on;
it only feeds the logged validation metrics: the last checkpoint is scored). Label noise (``data.label_noise``)
moves the jaw and nose-bridge points of every training and validation face, drawn once per face (seed 0), so the
3 Helen copies share their noisy labels. DHLN+SA: the S steps with Semantic Alignment (``sa.*`` defaults); GHCU:
``ghcu.steps`` more steps on that run's frozen backbone, its time added to the SA run's. JASRNet: ``small``'s
JASRNet with the spec's heatmap sigma (4 HR px = 0.5 heatmap px) and the same optimiser as DHLN small.

    python benchmarks/lowres_sa.py --preset small --seeds 0       # every unit of seed 0; seed 1 in a second process
    python benchmarks/lowres_sa.py --methods JASRNet --seeds 0    # one method
    python benchmarks/lowres_sa.py --report-only                  # merge the finished units

After the units, the rows are merged into ``benchmarks/results/lowres-<preset>-f1.json`` (rows with
``"protocol": "lowres_sa"``, under lowres.py's lock; lowres.py keeps them when it rewrites the file) and the
``lowres-sa-<preset>`` block of ``benchmarks/RESULTS.md`` is rewritten from every unit file present.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from lowres import locked, write_json
from results_block import update_block

from sht.config import Config, load_config
from sht.data.dataset import FaceSet, load_sources
from sht.data.noise import with_label_noise
from sht.evaluation import evaluate_model, load_eval_faces
from sht.infer import Predictor
from sht.report import markdown_table
from sht.train import SupervisedStage, Trainer, seed_everything, set_threads
from sht.train.semantic_alignment import SemanticAlignmentStage, train_ghcu

HERE = Path(__file__).resolve().parent
LR_SIZES = (16, 32, 64)
METHODS = ("DHLN", "JASRNet", "DHLN+SA", "DHLN+SA+GHCU")
NOISES = (0.0, 0.03, 0.06)
# the rows issue 13 asks for: clean JASRNet / SA / SA+GHCU and all three DHLN variants at both noise levels, plus
# a clean DHLN trained under this same protocol (lowres.py's DHLN row has another schedule and data split), so that
# every comparison is between units of one protocol and one budget
UNITS = [("DHLN", 0.0), ("JASRNet", 0.0), ("DHLN+SA", 0.0), ("DHLN+SA+GHCU", 0.0)] + [
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
                "protocol": "lowres_sa",
                "steps": args.steps,
            }
        )
    return rows


def unit_path(args: argparse.Namespace, method: str, seed: int, noise: float) -> Path:
    return Path(args.results) / "units" / f"{args.preset}-{method}-n{noise:g}-s{seed}.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=500, help="S: optimisation steps of every backbone")
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
    ap.add_argument("--report-only", action="store_true", help="only merge the finished units")
    ap.add_argument("--results-md", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    if args.report_only:
        report(args)
        return
    if not (Path(args.data) / "300w/helen/testset").is_dir():
        sys.exit(f"benchmark data not found under {args.data} (point --data at the shared data folder)")
    units = [(m, n) for m, n in UNITS if m in args.methods and n in args.noises]
    for seed in args.seeds:
        for method, noise in units:
            if seed != args.seeds[0] or (method, noise) != units[0]:
                report(args)  # every finished unit is visible at once
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
    report(args)


def _stats(rows: list[dict], key: str) -> tuple[float, float, int] | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None


def _fmt(st: tuple[float, float, int] | None, digits: int) -> str:
    if st is None:
        return "-"
    return f"{st[0]:.{digits}f}" if st[2] == 1 else f"{st[0]:.{digits}f} ± {st[1]:.{digits}f}"


def _compare(a: list[dict], b: list[dict], key: str, lower: bool = True) -> str:
    """'A beats B beyond the spread' test of two methods' per-seed rows (mean, larger of the two std)."""
    sa, sb = _stats(a, key), _stats(b, key)
    if sa is None or sb is None:
        return "not run"
    gain = (sb[0] - sa[0]) if lower else (sa[0] - sb[0])
    spread = max(sa[1], sb[1])
    if min(sa[2], sb[2]) < 2:
        return f"{gain:+.2f} (one seed; spread unknown)"
    return f"{gain:+.2f} vs spread {spread:.2f}: {'met' if gain > spread else 'not met'}"


def report(args: argparse.Namespace) -> None:
    """Merge every unit file into lowres.py's F = 1 JSON and rewrite the ``lowres-sa-<preset>`` RESULTS.md block."""
    files = sorted((Path(args.results) / "units").glob(f"{args.preset}-*.json"))
    docs = [json.loads(f.read_text()) for f in files]
    rows = [r for d in docs for r in d["rows"]]
    if not rows:
        return
    for r in rows:  # units written before the protocol key existed
        r.setdefault("protocol", "lowres_sa")
    seeds = sorted({r["seed"] for r in rows})
    target = Path(args.results) / f"lowres-{args.preset}-f1.json"
    with locked(Path(args.results) / f".lowres-{args.preset}.lock"):
        doc = (
            json.loads(target.read_text())
            if target.exists()
            else {"preset": args.preset, "labeled_fraction": 1.0, "seeds": seeds, "rows": []}
        )
        doc["rows"] = [r for r in doc["rows"] if r.get("protocol") != "lowres_sa"] + rows
        doc["lowres_sa"] = {
            "steps": sorted({d.get("steps") for d in docs}),
            "seeds": seeds,
            "command": f"python benchmarks/lowres_sa.py --preset {args.preset} --steps {args.steps} --seeds 0 1",
        }
        write_json(target, doc)

    def sel(method: str, noise: float, lr: int) -> list[dict]:
        return [r for r in rows if r["method"] == method and r["noise"] == noise and r["lr"] == lr]

    table = []
    for noise in NOISES:
        for lr in LR_SIZES:
            for m in METHODS:
                got = sel(m, noise, lr)
                if not got:
                    continue
                table.append(
                    [
                        f"{noise:g}",
                        lr,
                        m,
                        _fmt(_stats(got, "nme_io"), 2),
                        _fmt(_stats(got, "fr10"), 1),
                        _fmt(_stats(got, "auc10"), 3),
                        _fmt(_stats(got, "psnr_y"), 2),
                        _fmt(_stats(got, "train_min"), 1),
                        len(got),
                    ]
                )
    head = ["noise", "LR px", "method", "NME_io %", "FR10 %", "AUC10", "PSNR_Y dB", "train min", "seeds"]
    checks = [
        f"- noise {n:g}, 16 px: DHLN+SA lowers NME_io by "
        f"{_compare(sel('DHLN+SA', n, 16), sel('DHLN', n, 16), 'nme_io')}"
        for n in (0.03, 0.06)
    ]
    for n in NOISES:
        for lr in LR_SIZES:
            a, b = sel("DHLN+SA+GHCU", n, lr), sel("DHLN+SA", n, lr)
            if a and b:
                checks.append(
                    f"- GHCU, noise {n:g}, {lr} px: lowers NME_io by {_compare(a, b, 'nme_io')}; FR10 by "
                    f"{_compare(a, b, 'fr10')}"
                )
    for lr in LR_SIZES:
        j, d = sel("JASRNet", 0.0, lr), sel("DHLN", 0.0, lr)
        if j and d:
            checks.append(
                f"- JASRNet vs DHLN, {lr} px (train {_fmt(_stats(j, 'train_min'), 1)} vs "
                f"{_fmt(_stats(d, 'train_min'), 1)} min): NME_io lower by {_compare(j, d, 'nme_io')}; PSNR_Y "
                f"higher by {_compare(j, d, 'psnr_y', lower=False)}"
            )
    steps = sorted({d.get("steps") for d in docs})
    block = "\n".join(
        [
            f"Preset `{args.preset}`, {steps} optimisation steps per backbone (GHCU: `ghcu.steps` more on the frozen "
            "backbone, its time added), all labels (F = 1) of Helen train (drawn 3x, every 10th face held out for "
            "validation) + YTF68 train; label noise on the jaw and nose-bridge points of the training faces only; "
            f"test on clean Helen test. Seeds {seeds}: mean ± std over seeds. `train min`: wall time on this machine "
            "(one thread per process). Differences below are `gain vs the larger seed spread`.",
            "",
            markdown_table(head, table),
            "",
            *checks,
            "",
            f'Machine-readable: rows with `"protocol": "lowres_sa"` in `results/lowres-{args.preset}-f1.json`; '
            f"per unit `results/units/{args.preset}-*.json`. Regenerate: "
            f"`python benchmarks/lowres_sa.py --preset {args.preset} --steps {args.steps} --seeds 0` and, in a second "
            f"process, `--seeds 1`.",
        ]
    )
    update_block(args.results_md, f"lowres-sa-{args.preset}", block)
    print(block, flush=True)


if __name__ == "__main__":
    main()
