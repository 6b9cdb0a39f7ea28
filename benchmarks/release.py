"""Train, choose, export and document the release weights in one command:

    python benchmarks/release.py [--config benchmarks/configs/release-small.yaml] [--out runs/release]
                                 [--stages 1 2 3 4] [--stage N] [--override k=v ...]

Runs the SHT recipe (resumable; each stage keeps its best checkpoint on the validation split), scores the DHLN of
every trained stage on the validation split (``data.val``: faces held out of the training data, never a test
set), releases the stage with the lowest validation NME_io at 16 px (``--select-px``; or ``--stage N``), exports
it as fp16 to src/sht/weights/sht-small.safetensors (``--export``: another member of the release family) with its
provenance, and regenerates MODEL_CARD.md (benchmarks/model_card.py). Without arguments it reproduces the main shipped
weights; the 16 px member:

    python benchmarks/release.py --config benchmarks/configs/release-small16.yaml --out runs/release-small16 \
        --stages 1 --export src/sht/weights/sht-small16.safetensors
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

import torch

from sht.config import load_config
from sht.data.dataset import check_source
from sht.evaluation import evaluate_model, load_eval_faces
from sht.export import export_weights
from sht.infer import RELEASE_WEIGHTS, Predictor
from sht.train import run_recipe

ROOT = Path(__file__).resolve().parent.parent
NAMES = {
    1: "DHLN supervised (Eq. 4)",
    2: "FPTN on true heatmaps (Eq. 5-8)",
    3: "joint SHT (Eq. 9)",
    4: "weak SHT with unlabeled faces (Eq. 9-10)",
}


def validation_nme(ckpt: Path, val_sources: list[str], lr: int = 16) -> tuple[float, int]:
    """NME_io (%) of a stage's DHLN on the validation faces at ``lr`` px, and the number of faces."""
    pred = Predictor.from_checkpoint(ckpt)
    faces = load_eval_faces(val_sources, pred.config.model.face_size, pred.config.data.margin)
    res = evaluate_model(pred.model, faces, pred.codec, [lr])[lr].summary()
    return res["nme"], len(faces)


def count_faces(sources: list[str]) -> str:
    """``N distinct faces (a per source)`` counted from the sources (repeated sources counted once)."""
    distinct = list(dict.fromkeys(sources))
    counts = {s: check_source(s) for s in distinct}
    parts = [f"{counts[s]} from {s}" + (f" (drawn {sources.count(s)}x)" * (sources.count(s) > 1)) for s in distinct]
    return f"{sum(counts.values())} distinct labeled faces: " + ", ".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "benchmarks" / "configs" / "release-small.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "release"))
    ap.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    ap.add_argument("--stage", type=int, choices=[1, 3, 4], help="release this stage instead of the validation choice")
    ap.add_argument(
        "--select-px", type=int, default=16, help="LR size (px) of the validation NME that picks the stage (default 16)"
    )
    ap.add_argument("--no-card", action="store_true", help="do not regenerate MODEL_CARD.md afterwards")
    ap.add_argument("--machine-note", default="", help="a remark on the machine (e.g. shared with another job)")
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value config overrides (e.g. train.threads=1)")
    ap.add_argument(
        "--export",
        default=str(RELEASE_WEIGHTS),
        help="where the released weights go (a member of sht.infer.RELEASE_FAMILY; default: the main one)",
    )
    args = ap.parse_args()
    cfg = load_config(args.config, args.override)
    if not cfg.data.val:
        sys.exit("the release config needs data.val (held-out training faces) to choose the stage")
    runs = run_recipe(cfg, args.out, stages=args.stages)
    # stage 2 trains FPTN only (its DHLN is stage 1's); stages without steps are not trained
    candidates = [s for s in args.stages if s != 2 and cfg.sht.steps[s - 1] > 0]
    px = args.select_px
    scores = {s: validation_nme(runs[s] / "checkpoints" / "best.safetensors", cfg.data.val, px) for s in candidates}
    n_val = next(iter(scores.values()))[1]
    chosen = args.stage or min(candidates, key=lambda s: scores[s][0])
    ckpt = runs[chosen] / "checkpoints" / "best.safetensors"
    trained = [s for s in args.stages if s <= chosen and cfg.sht.steps[s - 1] > 0]
    seconds = sum(json.loads((runs[s] / "checkpoints" / "last.json").read_text()).get("seconds", 0) for s in trained)
    table = ", ".join(f"stage {s} {scores[s][0]:.2f} %" for s in candidates)
    why = (
        f"forced with --stage {chosen}"
        if args.stage
        else f"lowest validation NME_io at {px} px among the trained stages"
    )
    weak = cfg.sht.weak
    note = {
        "recipe": "; ".join(f"stage {s}: {NAMES[s]}, {cfg.sht.steps[s - 1]} steps" for s in trained)
        + f" (batch {cfg.train.batch_size}; stages 2-4: {cfg.train.batch_size // 2} pairs)"
        + (f", stage 1 starting from {cfg.train.init} (train.init)" if cfg.train.init else ""),
        "data": f"labeled: {', '.join(dict.fromkeys(cfg.data.train))}; unlabeled: "
        + (f"{', '.join(weak.images + weak.videos)} (at most {weak.limit} images)" if chosen == 4 else "none"),
        "faces": count_faces(list(cfg.data.train)),
        "validation": f"{n_val} faces of {', '.join(cfg.data.val)} (held out of the training data by photo)",
        "selection": f"validation NME_io at {px} px (best checkpoint of each stage): {table}",
        "choice": f"stage {chosen}: {why}",
        "command": "python benchmarks/release.py" + "".join(f" {a}" for a in sys.argv[1:]),
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s), {seconds / 60:.0f} min of training"
        + (f" ({args.machine_note})" if args.machine_note else ""),
    }
    out = export_weights(ckpt, args.export, fp16=True, note=json.dumps(note))
    print(f"released stage {chosen}: {ckpt} -> {out} ({out.stat().st_size / 1e6:.2f} MB); {note['selection']}")
    if not args.no_card:
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_card.py")], check=True)


if __name__ == "__main__":
    main()
