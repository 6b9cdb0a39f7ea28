"""Transfer probe: does FPTN's loss carry landmark information that can supervise DHLN? (issue 12)

Takes a trained DHLN (a stage-1/3/4 checkpoint) and an FPTN (a stage-2/3/4 checkpoint with ``fptn``, ``d_app``,
``d_shape``; its saved config -- the FPTN variant and the SHT gradient paths -- is the one probed, ``--override``
changes it) and held-out labeled pairs: the validation identities of the low-resolution benchmark
(``lowres_data.py``: 8 % of Helen train and YTF68 train by identity, never trained on; never Helen test). Reports
(see :mod:`sht.train.probe`):

- ``displacement_loss``: the transfer loss (Eq. 5, the lambda that reach DHLN) with the true heatmaps ("0") and
  with heatmaps rendered from landmarks moved by 2, 5 and 10 % of the inter-ocular distance; ``monotonic`` says
  whether it rises strictly with the displacement;
- ``cosine`` / ``cosine_by_region``: the mean cosine between the descent direction of the SHT pair terms with
  respect to each predicted landmark position (``-dL/dp``) and the direction prediction -> true landmark:
  **positive = helpful**, overall and per region (contour 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth
  48-67); ``cosine_terms`` per weighted term; ``supervised_cosine`` the same for the supervised heatmap loss (a
  reference that must be clearly positive).

The variant's entry in ``benchmarks/results/transfer_probe.json`` (a list) is replaced or appended, and the
``transfer-probe`` block of ``benchmarks/RESULTS.md`` is rewritten from every entry.

    python benchmarks/transfer_probe.py --variant fptn64 --dhln runs/x/1-dhln --fptn runs/x/2-fptn
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
from lowres_data import load_lowres_data
from results_block import update_block

from sht.checkpoint import read_checkpoint
from sht.config import apply_overrides, build_config, config_to_dict
from sht.report import markdown_table
from sht.train.probe import displacement_losses, position_cosines, probe_batches
from sht.train.stages import JointStage

HERE = Path(__file__).resolve().parent


def checkpoint_file(path: str) -> Path:
    """A checkpoint file, or a run directory's ``checkpoints/last.safetensors``."""
    p = Path(path)
    return p / "checkpoints" / "last.safetensors" if p.is_dir() else p


def probe(args: argparse.Namespace) -> dict:
    dhln = checkpoint_file(args.dhln)
    fptn = checkpoint_file(args.fptn) if args.fptn else None
    source = fptn or dhln
    _, doc = read_checkpoint(source)
    if "config" not in doc:
        sys.exit(f"{source} holds no config")
    cfg = apply_overrides(build_config(doc["config"]), args.override)
    torch.manual_seed(0)
    data = load_lowres_data(args.data, cfg.model.face_size, cfg.data.margin, cfg.data.context, 1.0, 0, args.cache)
    stage = JointStage(cfg, torch.device(args.device), train_faces=data.val)
    stage.init_from(dhln, fptn)
    batches = probe_batches(stage, data.val, args.pairs, args.lr_size, seed=0)
    t0 = time.time()
    disp = displacement_losses(stage, batches)
    cos = position_cosines(stage, batches)
    total = cos.get("total")
    sht = {k: v for k, v in config_to_dict(cfg)["sht"].items() if k not in ("pairs", "weak", "steps")}
    entry = {
        "variant": args.variant,
        "displacement_loss": None if disp is None else {k: v["total"] for k, v in disp.items()},
        "monotonic": None,
        "cosine": None if total is None else total["cosine"],
        "cosine_by_region": None if total is None else total["by_region"],
        "cosine_weighted": None if total is None else total["weighted"],
        "cosine_terms": {k: v["cosine"] for k, v in cos.items() if k not in ("total", "prediction", "supervised")},
        "cosine_terms_by_region": {k: v["by_region"] for k, v in cos.items() if k not in ("prediction", "supervised")},
        "grad_norm": {k: v["grad_norm"] for k, v in cos.items() if k != "prediction"},
        "supervised_cosine": cos["supervised"]["cosine"],
        "displacement_terms": disp,
        "prediction_nme_io": cos["prediction"]["nme_io"],
        "pairs": sum(b.input.shape[0] // 2 for b in batches),
        "lr_size": args.lr_size,
        "held_out": f"{data.counts['val_faces']} validation faces ({data.counts['val_identities']} identities)",
        "dhln": str(dhln),
        "fptn": None if fptn is None else str(fptn),
        "config": {"fptn": config_to_dict(cfg)["fptn"], "sht": sht},
        "seconds": round(time.time() - t0, 1),
        "command": "python benchmarks/transfer_probe.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
    }
    if disp is not None:
        vals = [v["total"] for v in disp.values()]
        entry["monotonic"] = all(a < b for a, b in zip(vals, vals[1:], strict=False))
    return entry


def block(rows: list[dict]) -> str:
    """The RESULTS.md table of every probed variant."""

    def f(v: float | None, digits: int = 3) -> str:
        return "-" if v is None else f"{v:+.{digits}f}"

    table = []
    for r in rows:
        d = r["displacement_loss"]
        curve = "-" if d is None else " / ".join(f"{d[k]:.4f}" for k in ("0", "2", "5", "10"))
        regions = r["cosine_by_region"] or {}
        terms = ", ".join(f"{k} {v:+.3f}" for k, v in r["cosine_terms"].items())
        table.append(
            [r["variant"], curve, {True: "yes", False: "**no**", None: "-"}[r["monotonic"]], f(r["cosine"])]
            + [f(regions.get(k)) for k in ("contour", "brows", "nose", "eyes", "mouth")]
            + [terms or "-", f(r["supervised_cosine"]), f"{r['prediction_nme_io']:.2f}"]
        )
    head = ["variant", "transfer loss at 0 / 2 / 5 / 10 % IOD", "rises", "cosine", "contour", "brows", "nose"]
    head += ["eyes", "mouth", "cosine per term", "supervised (ref.)", "pred. NME_io %"]
    first = rows[0]
    lines = [
        f"Held-out pairs: {first['pairs']} pairs of the benchmark's validation identities ({first['held_out']}; "
        f"never trained on, never Helen test), {first['lr_size']} px LR, pair augmentation as in training. "
        "Cosine: mean over landmarks of cos(-dL/dp, p_true - p_pred) for the SHT pair terms with the variant's "
        "weights -- **positive = the loss pulls the landmark toward the truth**; `supervised` is the same for the "
        "supervised heatmap loss (reference). `pred. NME_io`: DHLN's error on these pairs.",
        "",
        markdown_table(head, table),
        "",
        "Regenerate each row (`benchmarks/results/transfer_probe.json` has the configs and these commands):",
        "",
        *[f"- {r['variant']}: `{r['command']}`" for r in rows],
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", required=True, help="name of the entry in the JSON")
    ap.add_argument("--dhln", required=True, help="DHLN checkpoint (or run directory)")
    ap.add_argument("--fptn", default="", help="FPTN checkpoint (or run directory); empty: no FPTN (equivariance)")
    ap.add_argument("--override", nargs="*", default=[], help="key=value changes to the checkpoint's config")
    ap.add_argument("--pairs", type=int, default=96)
    ap.add_argument("--lr-size", type=int, default=16)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--cache", default=str(HERE.parent / ".cache" / "sht"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(HERE / "results" / "transfer_probe.json"))
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    entry = probe(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = json.loads(out.read_text()) if out.exists() else []
    rows = [r for r in rows if r.get("variant") != args.variant] + [entry]
    out.write_text(json.dumps(rows, indent=1) + "\n")
    update_block(args.results, "transfer-probe", block(rows))
    show = {k: entry[k] for k in ("variant", "displacement_loss", "monotonic", "cosine", "cosine_by_region")}
    show.update(cosine_terms=entry["cosine_terms"], supervised=entry["supervised_cosine"])
    print(json.dumps(show, indent=1))


if __name__ == "__main__":
    main()
