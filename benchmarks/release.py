"""Train, export and document the release weights in one command:

    python benchmarks/release.py [--config configs/release/small.yaml] [--out runs/release] [--stage 4] [--override k=v]

Runs the SHT recipe (resumable), exports the chosen stage's DHLN as fp16 to src/sht/weights/sht-small.safetensors
with its provenance, and regenerates MODEL_CARD.md (benchmarks/model_card.py).
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
from sht.export import export_weights
from sht.infer import RELEASE_WEIGHTS
from sht.train import run_recipe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(ROOT / "configs" / "release" / "small.yaml"))
    ap.add_argument("--out", default=str(ROOT / "runs" / "release"))
    ap.add_argument("--stage", type=int, default=4, choices=[1, 3, 4], help="the stage whose DHLN is released")
    ap.add_argument(
        "--why",
        default="stage 4 (SHT with unlabeled faces), the full recipe",
        help="why this stage is released (recorded in the weights and the model card)",
    )
    ap.add_argument("--machine-note", default="", help="a remark on the machine (e.g. shared with another job)")
    ap.add_argument("--override", nargs="*", default=[], help="extra key=value config overrides (e.g. train.threads=1)")
    args = ap.parse_args()
    cfg = load_config(args.config, args.override)
    stages = [s for s in (1, 2, 3, 4) if s <= args.stage]
    runs = run_recipe(cfg, args.out, stages=stages)
    ckpt = runs[args.stage] / "checkpoints" / "last.safetensors"
    seconds = sum(json.loads((runs[s] / "checkpoints" / "last.json").read_text()).get("seconds", 0) for s in stages)
    names = {
        1: "DHLN supervised (Eq. 4)",
        2: "FPTN on true heatmaps (Eq. 5-8)",
        3: "joint SHT (Eq. 9)",
        4: "weak SHT with unlabeled faces (Eq. 9-10)",
    }
    note = {
        "recipe": "; ".join(f"stage {s}: {names[s]}, {cfg.sht.steps[s - 1]} steps" for s in stages)
        + f" (batch {cfg.train.batch_size}; stages 2-4: {cfg.train.batch_size // 2} pairs)",
        "data": f"labeled: {', '.join(sorted(set(cfg.data.train)))} (Helen train drawn 3x); unlabeled: "
        + (
            f"{', '.join(cfg.sht.weak.images + cfg.sht.weak.videos) or 'none'} (at most {cfg.sht.weak.limit} images)"
            if args.stage == 4
            else "none (stage 4 not released)"
        ),
        "choice": args.why,
        "faces": "4,322 (870 Helen + 3,452 YouTube-Faces frames)",
        "command": f"python benchmarks/release.py --config {Path(args.config).relative_to(ROOT)} --stage {args.stage}",
        "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} thread(s), {seconds / 60:.0f} min of training"
        + (f" ({args.machine_note})" if args.machine_note else ""),
    }
    out = export_weights(ckpt, RELEASE_WEIGHTS, fp16=True, note=json.dumps(note))
    print(f"released {ckpt} -> {out} ({out.stat().st_size / 1e6:.2f} MB)")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "model_card.py"), "--weights", str(out)], check=True)


if __name__ == "__main__":
    main()
