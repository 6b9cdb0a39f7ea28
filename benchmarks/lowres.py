"""Low-resolution benchmark on 300-W Helen test: landmarks (NME_io / FR / AUC) and hallucination (PSNR_Y / SSIM_Y),
with a fraction F of the labels (the paper's motivating setting: few labels, many unlabeled faces and videos).

Data (``lowres_data.py``, every count counted there): validation = 8 % of Helen train + YTF68 train by identity
(fixed for all seeds and fractions; never Helen test); labeled = a fraction F of the rest by identity (per
source, drawn with the seed); unlabeled = the rest without labels (still images; YTF frames also as clips), plus
All-Age-Faces crops (SHT-i, EQ-i) and the talking-head videos (SHT-v), located by Haar + the stage-1 DHLN.

Methods, all with the same labeled budget: S DHLN optimisation steps of 16 labeled faces (8 labeled pairs in the
pair stages; unlabeled pairs are added on top, ``sht.add_unlabeled``) per seed, the same schedule:

- SHN, FHS, DHLN: S - J supervised steps (Eq. 4), then J supervised steps at the fine-tuning learning rate.
- SHT:      the same first S - J steps (shared with DHLN), FPTN pre-trained P steps on true heatmaps (stage 2),
            then J joint steps (stage 3, Eq. 9).
- SHT-i:    S - J supervised, J/2 joint, J/2 weak steps with unlabeled still images (stage 4, Eq. 9-10).
- SHT-v:    S - J supervised, J/2 joint (shared with SHT-i), J/2 weak steps with unlabeled video frames.
- EQ-i:     S - J supervised, then J weak steps with the equivariance loss alone on image pairs (labeled and
            unlabeled still images; no FPTN, no stage 2).
- SHT-i+EQ: SHT-i with the equivariance loss added in its weak steps.
- PAIRS-i:  the control of the weak methods: S - J supervised, then J steps of the weak stage of EQ-i with every
            landmark weak term at 0 (labeled pair views with the pair augmentation, unlabeled pairs with the face
            loss only). It differs from EQ-i only by the equivariance term and from DHLN by the pair stage itself.

Baselines: bicubic upsampling (faces) and the labeled training faces' mean shape (landmarks). Evaluation:
canonical 128 px crops of Helen test, bicubic LR at 16/32/64 px (``sht.evaluation``).

Resumable per unit (method x seed x fraction): a finished unit's result is a file under
``<out>/<preset>/f<F>/s<seed>/units/``, skipped on a rerun; unfinished stages resume from their checkpoints.
Processes for different seeds may run at the same time on the same folders: each writes only its own units, and
the merge -- ``benchmarks/results/lowres-<preset>-f<F>.json`` and the ``lowres-<preset>-f<F>`` block of
``benchmarks/RESULTS.md`` -- happens under a file lock from all unit files present.

    python benchmarks/lowres.py --preset small --labeled-fraction 0.1 1 --seeds 0      # and, at the same time,
    python benchmarks/lowres.py --preset small --labeled-fraction 0.1 1 --seeds 1      # (one process per seed)
    python benchmarks/lowres.py --estimate 4    # time every kind of step first and print the implied budget
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import fcntl
import json
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lowres_data import HELEN_REPEAT, LowresData, load_lowres_data
from results_block import update_block

from sht.config import Config, apply_overrides, load_config
from sht.data.dataset import FaceSet, mean_shape
from sht.data.heatmaps import HeatmapCodec
from sht.data.unlabeled import VIDEO_SUFFIXES
from sht.evaluation import evaluate_bicubic, evaluate_mean_shape, evaluate_model, load_eval_faces
from sht.infer import Predictor
from sht.models import DHLN, count_parameters
from sht.report import markdown_table, plot_ced
from sht.train import SupervisedStage, Trainer, seed_everything, set_threads
from sht.train.recipe import load_weak_data
from sht.train.stages import FPTNStage, JointStage

HERE = Path(__file__).resolve().parent
LR_SIZES = (16, 32, 64)
METHODS = ("SHN", "FHS", "DHLN", "SHT", "SHT-i", "SHT-v", "EQ-i", "SHT-i+EQ", "PAIRS-i")
STREAMS = ("shn", "fhs", "dhln")
EQ_ONLY = ["sht.lambda_gan=0", "sht.lambda_l1=0", "sht.lambda_perceptual=0"]


def base_config(args: argparse.Namespace, seed: int) -> Config:
    d = Path(args.data)
    return load_config(
        args.preset,
        [
            f"train.seed={seed}",
            f"train.threads={args.threads}",
            f"train.device={args.device}",
            "train.tensorboard=false",
            f"train.progress={args.progress}",
            f"data.cache_dir={args.cache}",
            f"fptn.vgg_weights={d / 'vgg19/vgg19_block1_caffe_bgr.npz'}",
            f"sht.weak.images=[{d / 'aaf128'}]",
            f"sht.weak.limit={args.unlabeled_limit}",
            f"sht.weak.videos=[{d / 'videos'}]",
            f"sht.weak.frames_per_video={args.frames_per_video}",
            "sht.weak.crop=detector",
            *args.override,
        ],
    )


def last(run: Path) -> Path:
    return run / "checkpoints" / "last.safetensors"


def done(run: Path, steps: int) -> bool:
    side = run / "checkpoints" / "last.json"
    return side.exists() and json.loads(side.read_text())["step"] >= steps


def seconds(runs: list[Path]) -> float:
    """Training wall time recorded in the runs' last checkpoints."""
    total = 0.0
    for r in runs:
        side = r / "checkpoints" / "last.json"
        if side.exists():
            total += float(json.loads(side.read_text()).get("seconds", 0.0))
    return total


def stage_cfg(cfg: Config, steps: int, lr: float | None = None) -> Config:
    c = copy.deepcopy(cfg)
    c.train.steps = steps
    if lr is not None:
        c.train.lr = lr
    c.train.eval_every = max(steps, 1)  # validation once, at the end (it is logged, never used to choose)
    c.train.warmup_steps = min(c.train.warmup_steps, max(steps // 10, 1))
    return c


class SeedRun:
    """The stages of one (seed, labeled fraction), each trained once when a unit first needs it."""

    def __init__(self, args: argparse.Namespace, seed: int, fraction: float, data: LowresData) -> None:
        self.args, self.seed, self.fraction, self.data = args, seed, fraction, data
        self.cfg = base_config(args, seed)
        self.device = torch.device(args.device)
        self.out = Path(args.out) / args.preset / f"f{fraction:g}" / f"s{seed}"
        n = min(len(data.val), args.val_limit)
        self.val = data.val.subset(torch.linspace(0, len(data.val) - 1, n).round().long())
        s, j = args.steps, args.joint
        self.s1, self.j, self.j1, self.j2 = s - j, j, j // 2, j - j // 2
        self._unlabeled: list[tuple[FaceSet, bool]] | None = None

    def _fit(self, cfg: Config, run: Path, make: Callable[[], Any]) -> Path:
        if not done(run, cfg.train.steps):
            seed_everything(cfg.train.seed)
            stage = make()
            Trainer(cfg, stage, run).fit()
        return last(run)

    def supervised(self, streams: str, first: bool) -> Path:
        c = copy.deepcopy(self.cfg)
        c.model.streams = streams
        run = self.out / (f"{streams}-1" if first else streams)
        sc = stage_cfg(c, self.s1) if first else stage_cfg(c, self.j, c.sht.dhln_lr)
        init = None if first else self.supervised(streams, True)

        def make() -> SupervisedStage:
            st = SupervisedStage(sc, self.device, train_faces=self.data.labeled, val_faces=self.val)
            if init is not None and not last(run).exists():
                st.init_from(init)
            return st

        return self._fit(sc, run, make)

    def fptn(self) -> Path:
        sc = stage_cfg(self.cfg, self.args.fptn_steps)
        run = self.out / "2-fptn"
        val = self.val.subset(torch.arange(min(len(self.val), 64)))
        return self._fit(sc, run, lambda: FPTNStage(sc, self.device, train_faces=self.data.labeled, val_faces=val))

    def joint(self, name: str, steps: int) -> Path:
        sc = stage_cfg(self.cfg, steps, self.cfg.sht.dhln_lr)
        run = self.out / name
        dhln, fptn = self.supervised("dhln", True), self.fptn()

        def make() -> JointStage:
            st = JointStage(sc, self.device, train_faces=self.data.labeled, val_faces=self.val)
            if not last(run).exists():
                st.init_from(dhln, fptn)
            return st

        return self._fit(sc, run, make)

    def unlabeled(self, kind: str) -> list[tuple[FaceSet, bool]]:
        """Unlabeled still images (``images``) or clips (``videos``): the protocol's own faces without labels
        plus All-Age-Faces / the talking-head videos, located with this seed's stage-1 DHLN (loaded once)."""
        if self._unlabeled is None:
            found = load_weak_data(self.cfg, self.supervised("dhln", True), self.device)
            stills = [fs for fs, video in found if not video]
            clips = [fs for fs, video in found if video]
            if self.data.unlabeled_images is not None:
                stills.insert(0, self.data.unlabeled_images)
            if self.data.unlabeled_clips is not None:
                clips.insert(0, self.data.unlabeled_clips)
            self._unlabeled = [(FaceSet.concat(stills), False), (FaceSet.concat(clips), True)]
            self.unlabeled_counts = {"images": len(self._unlabeled[0][0]), "video_frames": len(self._unlabeled[1][0])}
        return [self._unlabeled[0]] if kind == "images" else [self._unlabeled[1]]

    def weak(self, name: str, kind: str, overrides: list[str], start: str) -> Path:
        cfg = apply_overrides(self.cfg, overrides) if overrides else self.cfg
        steps = self.j if start == "dhln" else self.j2
        sc = stage_cfg(cfg, steps, cfg.sht.dhln_lr)
        run = self.out / name
        if start == "dhln":
            init: tuple[Path, Path | None] = (self.supervised("dhln", True), None)
        else:
            half = self.joint("3-half", self.j1)
            init = (half, half)

        def make() -> JointStage:
            st = JointStage(
                sc, self.device, weak=True, train_faces=self.data.labeled, val_faces=self.val,
                unlabeled=self.unlabeled(kind),
            )  # fmt: skip
            if not last(run).exists():
                st.init_from(*init)
            return st

        return self._fit(sc, run, make)

    def method(self, m: str) -> tuple[Path, list[Path]]:
        """Train ``m`` (and what it starts from); returns its final checkpoint and every run it depends on."""
        o = self.out
        eq = [f"sht.lambda_equivariance={self.args.lambda_eq}"]
        if m in ("SHN", "FHS", "DHLN"):
            s = m.lower()
            return self.supervised(s, False), [o / f"{s}-1", o / s]
        if m == "SHT":
            return self.joint("3-joint", self.j), [o / "dhln-1", o / "2-fptn", o / "3-joint"]
        shared = [o / "dhln-1", o / "2-fptn", o / "3-half"]
        if m == "SHT-i":
            return self.weak("4-weak-i", "images", [], "half"), [*shared, o / "4-weak-i"]
        if m == "SHT-v":
            return self.weak("4-weak-v", "videos", [], "half"), [*shared, o / "4-weak-v"]
        if m == "SHT-i+EQ":
            return self.weak("4-weak-i-eq", "images", eq, "half"), [*shared, o / "4-weak-i-eq"]
        if m == "EQ-i":
            return self.weak("4-eq-i", "images", EQ_ONLY + eq, "dhln"), [o / "dhln-1", o / "4-eq-i"]
        if m == "PAIRS-i":
            off = [*EQ_ONLY, "sht.lambda_equivariance=0"]
            return self.weak("4-pairs-i", "images", off, "dhln"), [o / "dhln-1", o / "4-pairs-i"]
        raise ValueError(m)


def summary_row(m: str, lr: int, seed: int | None, r: dict[str, float], train_min: float | None) -> dict:
    def get(key: str, digits: int) -> float | None:
        return round(float(r[key]), digits) if key in r else None

    return {
        "method": m,
        "lr": lr,
        "seed": seed,
        "nme_io": get("nme", 3),
        "fr10": get("fr", 2),
        "auc10": get("auc", 4),
        "psnr_y": get("psnr", 3),
        "ssim_y": get("ssim", 5),
        "train_min": None if train_min is None else round(train_min, 2),
    }


def write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def run_units(args: argparse.Namespace, test: FaceSet) -> None:
    for fraction in args.labeled_fraction:
        for seed in args.seeds:
            units = Path(args.out) / args.preset / f"f{fraction:g}" / f"s{seed}" / "units"
            units.mkdir(parents=True, exist_ok=True)
            todo = [m for m in args.methods if not (units / f"{m}.json").exists()]
            if not (units / "mean shape.json").exists():
                todo.append("mean shape")
            if not todo:
                continue
            set_threads(args.threads)
            data = load_lowres_data(args.data, 128, 1.3, 1.5, fraction, seed, args.cache)
            run = SeedRun(args, seed, fraction, data)
            for m in todo:
                t0 = time.time()
                if m == "mean shape":
                    res = evaluate_mean_shape(test, mean_shape(data.labeled), LR_SIZES)
                    rows = [summary_row(m, s, seed, res[s].summary(), None) for s in LR_SIZES]
                    extra: dict[str, Any] = {"nme16": res[16].nme.tolist()}
                else:
                    ckpt, deps = run.method(m)
                    pred = Predictor.from_checkpoint(ckpt, args.device)
                    res = evaluate_model(pred.model, test, pred.codec, LR_SIZES, device=args.device)
                    minutes = seconds(deps) / 60
                    rows = [summary_row(m, s, seed, res[s].summary(), minutes) for s in LR_SIZES]
                    nme16 = None if res[16].nme is None else res[16].nme.tolist()
                    extra = {"nme16": nme16, "runs": [str(d) for d in deps]}
                    if m.startswith(("SHT-i", "SHT-v", "EQ", "PAIRS")):
                        extra["unlabeled"] = getattr(run, "unlabeled_counts", None)
                extra["counts"] = data.counts
                write_json(units / f"{m}.json", {"rows": rows, **extra, "wall_s": round(time.time() - t0, 1)})
                print(f"lowres: f={fraction:g} seed {seed}: {m} done ({time.time() - t0:.0f} s)", flush=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fmt(vals: list[float], digits: int) -> str:
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals):.{digits}f}"


def merge(args: argparse.Namespace, test: FaceSet, command: str) -> None:
    """Write the JSON and the RESULTS.md block of each fraction from every unit file present."""
    bic = evaluate_bicubic(test, LR_SIZES)
    results_dir = Path(args.results_dir)
    with locked(results_dir / f".lowres-{args.preset}.lock"):
        for fraction in args.labeled_fraction:
            root = Path(args.out) / args.preset / f"f{fraction:g}"
            units: dict[tuple[str, int], dict] = {}
            for f in sorted(root.glob("s*/units/*.json")):
                seed = int(f.parent.parent.name[1:])
                units[(f.stem, seed)] = json.loads(f.read_text())
            if not units:
                continue
            seeds = sorted({s for _, s in units})
            rows = [summary_row("bicubic", s, None, bic[s].summary(), None) for s in LR_SIZES]
            for key in sorted(units, key=lambda k: ((["mean shape", *METHODS]).index(k[0]), k[1])):
                rows += units[key]["rows"]
            doc = {"preset": args.preset, "labeled_fraction": fraction, "seeds": seeds, "rows": rows}
            counts = next(iter(units.values()))["counts"]
            unl = next((u["unlabeled"] for u in units.values() if "unlabeled" in u), None)
            doc["data"] = {**counts, **({"unlabeled_total": unl} if unl else {}), "test_faces": len(test)}
            doc["budget"] = {"steps": args.steps, "joint": args.joint, "fptn_steps": args.fptn_steps}
            doc["command"] = command
            target = results_dir / f"lowres-{args.preset}-f{fraction:g}.json"
            if target.exists():  # rows another script merged into this file (benchmarks/lowres_sa.py) stay
                old = json.loads(target.read_text())
                doc["rows"] += [r for r in old["rows"] if r.get("protocol") == "lowres_sa"]
                if "lowres_sa" in old:
                    doc["lowres_sa"] = old["lowres_sa"]
            write_json(target, doc)
            block = results_block(args, doc, units, root)
            update_block(args.results, f"lowres-{args.preset}-f{fraction:g}", block)
            print(block)


def results_block(args: argparse.Namespace, doc: dict, units: dict, root: Path) -> str:
    c, fraction = doc["data"], doc["labeled_fraction"]
    methods = [m for m in METHODS if any(k[0] == m for k in units)]
    table = []
    for s in LR_SIZES:
        for m in ["bicubic", "mean shape", *methods]:
            sel = [r for r in doc["rows"] if r["method"] == m and r["lr"] == s]
            if not sel:
                continue

            def col(key: str, digits: int, sel: list[dict] = sel) -> str:
                return fmt([r[key] for r in sel if r[key] is not None], digits)

            mins = [r["train_min"] for r in sel if r["train_min"] is not None]
            table.append(
                [s, m, col("nme_io", 2), col("fr10", 1), col("auc10", 3), col("psnr_y", 2), col("ssim_y", 4)]
                + [f"{np.mean(mins):.1f}" if mins else "-"]
            )
    head = ["LR px", "method", "NME_io %", "FR10 %", "AUC10", "PSNR_Y dB", "SSIM_Y", "train min"]
    params = {m: count_parameters(DHLN(load_config(args.preset, [f"model.streams={m}"]).model)) for m in STREAMS}
    unl = c.get("unlabeled_total")
    unl_txt = (
        f"unlabeled: {c['unlabeled_faces']} of the labeled pool's faces without labels + All-Age-Faces crops "
        f"(SHT-i / EQ-i: {unl['images']} still images in all) and {c['unlabeled_clip_frames']} YTF frames in "
        f"{c['unlabeled_clips']} clips + the talking-head videos (SHT-v: {unl['video_frames']} frames in all), "
        "located by Haar + the stage-1 DHLN"
        if unl
        else "unlabeled: none trained yet"
    )
    means = {
        m: float(np.mean([r["nme_io"] for r in doc["rows"] if r["method"] == m and r["lr"] == 16]))
        for m in methods
        if m not in ("FHS",)
    }
    spreads = {
        m: float(np.std([r["nme_io"] for r in doc["rows"] if r["method"] == m and r["lr"] == 16])) for m in means
    }
    check = "; ".join(f"{m} {means[m]:.2f} ± {spreads[m]:.2f}" for m in means)
    cfg = load_config(args.preset)
    lines = [
        f"Labeled fraction **F = {fraction:g}**, preset `{args.preset}` "
        f"({', '.join(f'{m.upper()} {v / 1e6:.3f}M' for m, v in params.items())} parameters). Data (counted): "
        f"labeled pool Helen train {c['helen_faces']} + YTF68 train {c['ytf_faces']} = {c['pool_faces']} faces "
        f"({c['pool_identities']} identities); validation (by identity, never trained on, never Helen test) "
        f"{c['val_faces']} faces ({c['val_identities']} identities); labeled {c['labeled_faces']} faces "
        f"({c['labeled_helen']} Helen, drawn {HELEN_REPEAT}x, + {c['labeled_ytf']} YTF; {c['labeled_identities']} "
        "identities); "
        f"{unl_txt}. Test: Helen test ({c['test_faces']} faces).",
        "",
        f"Budget per method and seed: S = {args.steps} DHLN steps of {cfg.train.batch_size} labeled faces "
        f"({args.steps * cfg.train.batch_size} labeled samples, the same for every method); the last J = "
        f"{args.joint} are the continuation (SHN/FHS/DHLN, supervised at lr {cfg.sht.dhln_lr:g}) or the pair "
        f"stages (same lr; {cfg.train.batch_size // 2} labeled pairs a step, {cfg.sht.weak.unlabeled_pairs} "
        f"unlabeled pairs added in the weak stages); FPTN pre-trained {args.fptn_steps} steps on true heatmaps; "
        f"equivariance weight {args.lambda_eq:g}. Seeds {doc['seeds']}: mean ± std over seeds. `train min`: "
        "training wall time of everything the row's model depends on (shared stages counted in each row), mean "
        f"over seeds, on this machine ({platform.machine()} CPU, {args.threads} thread(s) per process).",
        "",
        markdown_table(head, table),
        "",
        f"NME_io at 16 px (mean ± std over seeds): {check}.",
        "",
        f"![CED 16 px](figures/lowres_{args.preset}_f{fraction:g}_ced_16px.png)",
        "",
        f"Machine-readable: `results/lowres-{args.preset}-f{fraction:g}.json`. Regenerate: `{doc['command']}`",
    ]
    curves = {}
    first = doc["seeds"][0]
    for m in ["mean shape", *methods]:
        u = units.get((m, first))
        if u is not None and u.get("nme16") is not None:
            curves[m] = np.asarray(u["nme16"])
    if curves:
        plot_ced(
            curves,
            Path(args.results).parent / "figures" / f"lowres_{args.preset}_f{fraction:g}_ced_16px.png",
            title=f"Helen test, 16 px LR ({args.preset}, F = {fraction:g}, seed {first})",
        )
    return "\n".join(lines)


def estimate(args: argparse.Namespace, test: FaceSet, n: int) -> None:
    """Time ``n`` steps of every kind of stage (after one warm-up step), the unlabeled-face location and one
    evaluation on this machine now, and print the training time the chosen budget implies per process."""
    import tempfile

    data = load_lowres_data(args.data, 128, 1.3, 1.5, min(args.labeled_fraction), args.seeds[0], args.cache)
    run = SeedRun(args, args.seeds[0], min(args.labeled_fraction), data)
    cfg, dev = run.cfg, run.device
    per: dict[str, float] = {}

    def timed(name: str, stage: Any) -> None:
        stage.train_step(0)
        t0 = time.time()
        for i in range(1, n + 1):
            stage.train_step(i)
        per[name] = (time.time() - t0) / n
        print(f"estimate: {name}: {per[name]:.2f} s/step", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for streams in STREAMS:
            c = copy.deepcopy(cfg)
            c.model.streams = streams
            timed(streams, SupervisedStage(c, dev, train_faces=data.labeled, val_faces=run.val))
        timed("fptn", FPTNStage(cfg, dev, train_faces=data.labeled))
        timed("joint", JointStage(cfg, dev, train_faces=data.labeled))
        one = stage_cfg(cfg, 1)
        Trainer(one, SupervisedStage(one, dev, train_faces=data.labeled), Path(tmp) / "d").fit()
        t0 = time.time()
        c = copy.deepcopy(cfg)
        c.sht.weak.limit = min(200, args.unlabeled_limit or 200)
        c.sht.weak.videos = c.sht.weak.videos if args.frames_per_video else []
        found = load_weak_data(c, last(Path(tmp) / "d"), dev)
        located = sum(len(f) for f, _ in found)
        locate_s = (time.time() - t0) / max(located, 1)
        print(f"estimate: locating unlabeled faces: {locate_s:.3f} s/face", flush=True)
        kw = {"train_faces": data.labeled}
        stills = [(data.unlabeled_images, False)] if data.unlabeled_images is not None else found[:1]
        clips = [(data.unlabeled_clips, True)] if data.unlabeled_clips is not None else found[-1:]
        timed("weak", JointStage(cfg, dev, weak=True, unlabeled=stills, **kw))
        timed("weak-v", JointStage(cfg, dev, weak=True, unlabeled=clips, **kw))
        eq = apply_overrides(cfg, [*EQ_ONLY, f"sht.lambda_equivariance={args.lambda_eq}"])
        timed("eq", JointStage(eq, dev, weak=True, unlabeled=stills, **kw))
        model = DHLN(cfg.model).to(dev)
        t0 = time.time()
        evaluate_model(model, test, HeatmapCodec.from_config(cfg), LR_SIZES, device=dev)
        eval_s = time.time() - t0
    s1, j, j1, j2, p = run.s1, run.j, run.j1, run.j2, args.fptn_steps
    train = {
        "SHN": (s1 + j) * per["shn"],
        "FHS": (s1 + j) * per["fhs"],
        "DHLN": (s1 + j) * per["dhln"],
        "FPTN stage 2": p * per["fptn"],
        "SHT joint": j * per["joint"],
        "shared half joint": j1 * per["joint"],
        "SHT-i weak": j2 * per["weak"],
        "SHT-v weak": j2 * per["weak-v"],
        "SHT-i+EQ weak": j2 * per["weak"],
        "EQ-i weak": j * per["eq"],
    }
    aaf = args.unlabeled_limit or 13_322
    videos = [v for v in (Path(args.data) / "videos").iterdir() if v.suffix.lower() in VIDEO_SUFFIXES]
    unl = (aaf + len(videos) * args.frames_per_video) * locate_s
    evals = (len(METHODS) * eval_s) + len(METHODS) * eval_s * args.val_limit / max(len(test), 1)
    one_fraction = sum(train.values()) + unl + evals
    print("estimate (minutes, one seed, one fraction): " + ", ".join(f"{k} {v / 60:.1f}" for k, v in train.items()))
    print(f"estimate: + locating {aaf} All-Age-Faces crops and the videos {unl / 60:.1f}, evaluation {evals / 60:.1f}")
    total = one_fraction * len(args.labeled_fraction)
    print(f"estimate: one process per seed, {len(args.labeled_fraction)} fraction(s): {total / 60:.0f} min")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--labeled-fraction", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--steps", type=int, default=500, help="S: DHLN steps per method")
    ap.add_argument("--joint", type=int, default=100, help="J: of those, continuation/pair-stage steps")
    ap.add_argument("--fptn-steps", type=int, default=150, help="P: FPTN pre-training steps (stage 2)")
    ap.add_argument("--lambda-eq", type=float, default=0.25, help="equivariance weight of EQ-i and SHT-i+EQ")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--unlabeled-limit", type=int, default=500, help="All-Age-Faces crops used (0: all)")
    ap.add_argument("--frames-per-video", type=int, default=16)
    ap.add_argument("--val-limit", type=int, default=60)
    ap.add_argument("--test-limit", type=int, default=0, help="evaluate on the first N test faces (dry runs)")
    ap.add_argument("--out", default=str(HERE / "runs" / "lowres"))
    ap.add_argument("--results-dir", default=str(HERE / "results"))
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--cache", default=str(HERE.parent / ".cache" / "sht"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--report-only", action="store_true", help="only merge the finished units")
    ap.add_argument("--estimate", type=int, default=0, help="time N steps of each stage, print the budget, stop")
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value config overrides")
    args = ap.parse_args()
    test_dir = Path(args.data) / "300w" / "helen" / "testset"
    if not test_dir.is_dir():
        sys.exit(f"benchmark data not found: {test_dir} (point --data at the shared data folder)")
    test = load_eval_faces([str(test_dir)], 128, 1.3, limit=args.test_limit, cache_dir=args.cache)
    if args.estimate:
        estimate(args, test, args.estimate)
        return
    if not args.report_only:
        run_units(args, test)
    skip = {"--seeds", "--report-only", "--progress"}
    argv, kept, drop = sys.argv[1:], [], False
    for a in argv:
        if a.startswith("--"):
            drop = a in skip
        if not drop:
            kept.append(a)
    command = "python benchmarks/lowres.py " + " ".join(shlex.quote(a) for a in kept) + " --seeds 0 1"
    merge(args, test, command)


if __name__ == "__main__":
    main()
