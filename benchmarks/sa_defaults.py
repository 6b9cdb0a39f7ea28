"""Measure Semantic Alignment's search settings (``sa.*`` defaults) on noisy TRAINING data, never Helen test.

DHLN ``small`` is trained as in ``lowres_sa.py``'s noisy-label units (Helen train x3 + YTF68 train, validation
slice carved from Helen train, label noise 0.06). Every ``--steps / 4`` steps its heatmaps are searched, for each
setting, around the annotations of (A) ``--faces`` of its own Helen training faces (what SA searches) and (B) the
held-out validation slice, with annotation noise 0, 0.03 and 0.06 (the same draws, scaled). Score: the error of
the searched points against the clean Helen annotations, in % of the inter-ocular distance, mean over the 68 points
(``nme``) and over the 21 noisy ones (``weak``). The searched error is 0 for a perfect search; the annotation's own
error is the baseline (0 without noise, where any move is a loss).

Grid: ``sa.unit`` heatmap (DHLN: = input) or face pixels; ``sa.patch`` 3/5/7; ``sa.lr_size`` 16/64; ``sigma_1``
0.5-16 window units or none; ``sigma_2`` 0.25-8. Writes ``benchmarks/results/sa_defaults.json`` and prints the
best settings per checkpoint; the grid of every setting goes to ``<out>/n<noise>/sa_grid.json`` (not committed),
from which ``--summarise`` rebuilds the committed summary (``chosen``: the ``sa.*`` defaults' row).

    python benchmarks/sa_defaults.py --steps 1000
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from lowres_sa import HERE, carve_validation, labeled_data, method_config

from sht.alignment import chi2_grid, search_cost
from sht.config import SAConfig
from sht.data.dataset import BatchBuilder, FaceSet, load_sources
from sht.data.noise import weak_points, with_label_noise
from sht.train import SupervisedStage, Trainer, seed_everything, set_threads
from sht.train.semantic_alignment import grid_step

NOISES = (0.0, 0.03, 0.06)
SETTINGS = ("unit", "patch", "lr_size", "sigma_prior", "sigma_likelihood")
UNITS = ("heatmap", "face")
PATCHES = (3, 5, 7)
LR_SIZES = (16, 64)
SIGMA_PRIOR = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, math.inf)
SIGMA_LIKELIHOOD = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


def nme(points: torch.Tensor, clean: torch.Tensor, index: list[int]) -> float:
    """Mean point error over ``index`` in % of the clean inter-ocular distance (36-45)."""
    iod = (clean[:, 36] - clean[:, 45]).norm(dim=-1, keepdim=True)
    return float(((points - clean).norm(dim=-1) / iod)[:, index].mean()) * 100


class MeasuredStage(SupervisedStage):
    """The supervised DHLN stage whose ``evaluate`` runs the search grid on the measured face sets."""

    def __init__(self, *a, sets: dict[str, tuple[FaceSet, dict[float, torch.Tensor]]], log: list, **kw) -> None:  # noqa: ANN002, ANN003
        super().__init__(*a, **kw)
        self.sets, self.log, self.step = sets, log, 0

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        self.step = step + 1
        return super().train_step(step)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        t0 = time.time()
        cfg, codec = self.cfg, self.codec
        weak = weak_points()
        every = list(range(68))
        self.model.eval()
        entry: dict = {"step": self.step, "sets": {}}
        for name, (faces, anchors) in self.sets.items():
            clean = faces.canonical_points().float()
            res: dict = {"baseline": {}, "model": {}, "search": []}
            for noise, a in anchors.items():
                res["baseline"][str(noise)] = {"nme": nme(a, clean, every), "weak": nme(a, clean, weak)}
            for lr in LR_SIZES:
                builder = BatchBuilder(faces, cfg.model.input_size, codec, [lr])
                hms, decoded = [], []
                for i in range(0, len(faces), 64):
                    b = builder.build(torch.arange(i, min(i + 64, len(faces))), lr_size=lr)
                    h = self.model(b.input, b.base).final_heatmaps.float()
                    hms.append(h)
                    decoded.append(codec.decode(h)[0])
                hm, dec = torch.cat(hms), torch.cat(decoded)
                res["model"][str(lr)] = {"nme": nme(dec, clean, every), "weak": nme(dec, clean, weak)}
                for unit in UNITS:
                    cfg.sa.unit = unit
                    step = grid_step(cfg)
                    for patch in PATCHES:
                        for noise, a in anchors.items():
                            anc = a * codec.scale
                            cands, chi2s = [], []
                            for i in range(0, len(faces), 16):
                                sl = slice(i, i + 16)
                                c, x = chi2_grid(hm[sl], anc[sl], cfg.sa.window, step, patch, codec.sigma)
                                cands.append(c)
                                chi2s.append(x)
                            cand, chi2 = torch.cat(cands), torch.cat(chi2s)
                            for s1 in SIGMA_PRIOR:
                                for s2 in SIGMA_LIKELIHOOD:
                                    cost = search_cost(cand, chi2, anc, s1 * step, s2)
                                    best = cost.argmin(-1)
                                    pts = cand.gather(2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
                                    pts = pts / codec.scale
                                    res["search"].append(
                                        {
                                            "lr_size": lr,
                                            "unit": unit,
                                            "patch": patch,
                                            "sigma_prior": s1 if math.isfinite(s1) else None,
                                            "sigma_likelihood": s2,
                                            "noise": noise,
                                            "nme": nme(pts, clean, every),
                                            "weak": nme(pts, clean, weak),
                                        }
                                    )
            entry["sets"][name] = res
        self.model.train()
        self.log.append(entry)
        print(f"step {self.step}: search grid measured in {time.time() - t0:.0f} s", file=sys.stderr, flush=True)
        return {}


def summarise(entry: dict, name: str, top: int = 5) -> list[dict]:
    """Settings ranked by the searched error averaged over the three noise levels (all 68 points)."""
    rows: dict[tuple, dict] = {}
    for r in entry["sets"][name]["search"]:
        key = (r["lr_size"], r["unit"], r["patch"], r["sigma_prior"], r["sigma_likelihood"])
        d = rows.setdefault(key, {"lr_size": key[0], "unit": key[1], "patch": key[2], "sigma_prior": key[3]})
        d["sigma_likelihood"] = key[4]
        d[f"nme@{r['noise']}"] = r["nme"]
        d[f"weak@{r['noise']}"] = r["weak"]
    for d in rows.values():
        d["mean_nme"] = sum(d[f"nme@{n}"] for n in NOISES) / len(NOISES)
    return sorted(rows.values(), key=lambda d: d["mean_nme"])[:top]


def marginal(rows: list[dict], key: str) -> dict[str, float]:
    """The best ``mean_nme`` for each value of ``key`` (the other settings at their best)."""
    out: dict[str, float] = {}
    for r in rows:
        k = str(r[key])
        out[k] = min(out.get(k, math.inf), r["mean_nme"])
    return {k: round(v, 3) for k, v in out.items()}


def compact(full: dict, chosen: dict) -> dict:
    """The committed summary of a full grid log: per checkpoint and face set, the baselines, the ten best
    settings, the best per value of each setting, and the ``chosen`` setting's row."""
    steps = {}
    for e in full["log"]:
        per_set = {}
        for name, res in e["sets"].items():
            ranked = summarise(e, name, top=10**6)
            mine = [r for r in ranked if all(r[k] == v for k, v in chosen.items())]
            per_set[name] = {
                "annotation": res["baseline"],
                "model_decoded": res["model"],
                "top10": ranked[:10],
                "best_by": {k: marginal(ranked, k) for k in SETTINGS},
                # the same among settings that move points at all (a drift of > 0.05 % on clean annotations)
                "best_moving_by": {k: marginal([r for r in ranked if r["nme@0.0"] > 0.05], k) for k in SETTINGS},
                "chosen": mine[0] if mine else None,
            }
        steps[str(e["step"])] = per_set
    return {k: v for k, v in full.items() if k != "log"} | {"chosen": chosen, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--faces", type=int, default=200, help="training faces searched (set A)")
    ap.add_argument("--noise", type=float, default=0.06, help="label noise of the training run")
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "runs" / "sa_defaults"))
    ap.add_argument("--results", default=str(HERE / "results" / "sa_defaults.json"))
    ap.add_argument("--summarise", metavar="FULL_JSON", help="only rebuild --results from a full grid log")
    args = ap.parse_args()
    sa = SAConfig()
    chosen = {"lr_size": sa.lr_size or 64, "unit": sa.unit, "patch": sa.patch, "sigma_prior": sa.sigma_prior}
    chosen["sigma_likelihood"] = sa.sigma_likelihood
    if args.summarise:
        full = json.loads(Path(args.summarise).read_text())
        Path(args.results).write_text(json.dumps(compact(full, chosen), indent=1))
        return
    args.device, args.progress, args.ghcu_steps = "cpu", False, None
    args.override = [f"train.eval_every={args.steps // 4}"]
    cfg = method_config(args, "DHLN", 0, args.noise)
    set_threads(args.threads)
    train, val = labeled_data(args, cfg)
    clean = load_sources(
        [str(Path(args.data) / "300w/helen/trainset")],
        cfg.model.face_size,
        cfg.data.margin,
        cfg.data.context,
        cache_dir=cfg.data.cache_dir,
    )
    if args.train_limit:
        clean = clean.subset(range(min(args.train_limit, len(clean))))
    clean_train, clean_val = carve_validation(clean, args.val_every)
    sets = {}
    for name, faces in (("train", clean_train.subset(range(min(args.faces, len(clean_train))))), ("val", clean_val)):
        anchors = {}
        for noise in NOISES:
            noisy = with_label_noise(clean, noise, cfg.data.label_noise_seed) if noise else clean
            part = carve_validation(noisy, args.val_every)[0 if name == "train" else 1]
            anchors[noise] = part.subset(range(len(faces))).canonical_points().float()
        sets[name] = (faces, anchors)
    log: list = []
    t0 = time.time()
    seed_everything(0)
    stage = MeasuredStage(cfg, torch.device("cpu"), train_faces=train, val_faces=val, sets=sets, log=log)
    Trainer(cfg, stage, Path(args.out) / f"n{args.noise:g}").fit()
    doc = {
        "command": "python benchmarks/sa_defaults.py " + " ".join(sys.argv[1:]),
        "minutes": (time.time() - t0) / 60,
        "training_noise": args.noise,
        "steps": args.steps,
        "faces": {k: len(v[0]) for k, v in sets.items()},
        "log": log,
    }
    full = Path(args.out) / f"n{args.noise:g}" / "sa_grid.json"  # every setting (large; not committed)
    full.write_text(json.dumps(doc))
    out = Path(args.results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(compact(doc, chosen), indent=1))
    for e in log:
        for n in sets:
            base = e["sets"][n]["baseline"]
            errors = ", ".join(f"{k}: {v['nme']:.2f}" for k, v in base.items())
            print(f"step {e['step']} set {n}: annotation error {errors}")
            print(f"  model: {e['sets'][n]['model']}")
            for r in summarise(e, n, 3):
                print("  ", {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()})


if __name__ == "__main__":
    main()
