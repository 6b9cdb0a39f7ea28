"""Regenerate MODEL_CARD.md from the shipped weights: measured NME / FR / AUC / PSNR / SSIM at 16/32/64 px on
300-W Helen test (the canonical protocol of ``sht.evaluation``), with bicubic for reference, and the independent
scorer's line as a cross-check.

    python benchmarks/model_card.py [--data ../shared/data] [--weights src/sht/weights/sht-small.safetensors]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from sht.checkpoint import read_checkpoint
from sht.evaluation import evaluate_bicubic, evaluate_model, load_eval_faces
from sht.infer import RELEASE_WEIGHTS, Predictor
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LR_SIZES = (16, 32, 64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--weights", default=str(RELEASE_WEIGHTS))
    ap.add_argument("--out", default=str(ROOT / "MODEL_CARD.md"))
    args = ap.parse_args()
    data, weights = Path(args.data), Path(args.weights)
    test_dir = data / "300w" / "helen" / "testset"
    if not test_dir.is_dir():
        sys.exit(f"Helen test not found at {test_dir}")
    _, doc = read_checkpoint(weights)
    info = json.loads(doc.get("note") or "{}")
    pred = Predictor.from_checkpoint(weights)
    cfg = pred.config
    test = load_eval_faces([str(test_dir)], cfg.model.face_size, cfg.data.margin)
    res = evaluate_model(pred.model, test, pred.codec, LR_SIZES)
    bic = evaluate_bicubic(test, LR_SIZES)
    rows = []
    for s in LR_SIZES:
        m, b = res[s].summary(), bic[s].summary()
        rows.append(
            [
                s,
                f"{m['nme']:.2f}",
                f"{m['fr']:.1f}",
                f"{m['auc']:.3f}",
                f"{m['psnr']:.2f}",
                f"{m['ssim']:.4f}",
                f"{b['psnr']:.2f}",
                f"{b['ssim']:.4f}",
            ]
        )
    table = markdown_table(
        ["LR px", "NME_io %", "FR10 %", "AUC10", "PSNR_Y dB", "SSIM_Y", "bicubic PSNR_Y", "bicubic SSIM_Y"], rows
    )
    tool = data.parent / "tools" / "score_detect.py"
    cross = "not run (tool absent)"
    if tool.exists():
        r = subprocess.run(
            [
                sys.executable,
                str(tool),
                str(Path(sys.executable).parent / "sht"),
                str(test_dir),
                "16",
                "--faces",
                "--weights",
                str(weights),
            ],
            capture_output=True,
            text=True,
        )
        cross = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"failed: {r.stderr[-200:]}"
    m = cfg.model
    size_mb = weights.stat().st_size / 1e6
    params = sum(p.numel() for p in pred.model.parameters())
    text = f"""# Model card: `sht-small` (the release weights shipped with sht)

`sht.Detector()` and `sht detect` (without `--weights`) load `src/sht/weights/sht-small.safetensors`.

## What it is

A DHLN (paper §3.1: stacked-hourglass landmark stream + face-hallucination stream, fused by FUBlock1/FUBlock2) with
the `small` preset: {m.input_size}x{m.input_size} input and heatmaps, {m.num_stacks} stacks x {m.channels} channels,
{m.num_stacks} SR modules x {m.sr_blocks} SRBlocks x {m.sr_channels} channels, face hallucinated at
{m.face_size}x{m.face_size}, 68 iBUG points. {params / 1e6:.2f}M parameters, stored in {doc.get("dtype", "float16")}
({size_mb:.1f} MB). FPTN, used in training, is not part of it.

Input: a face crop in the canonical convention (square, centred on the 68-point box, side 1.3x its larger side) at
any resolution -- it was trained on 16, 32 and 64 px faces (bicubic, 8-bit), resized to {m.input_size} px.
Output: 68 landmarks in the crop's pixels and a {m.face_size} px hallucinated face. For whole photos,
`Detector.detect` finds faces first (OpenCV Haar cascade), crops them and re-centres the crop on the landmarks.

## Training

- Recipe: {info.get("recipe", doc.get("stage", "?"))}
- Data: {info.get("data", "?")}; {info.get("faces", "?")}
- Validation (model selection): {info.get("validation", "none recorded")}
- Selection: {info.get("selection", "none recorded")}
- Released: {info.get("choice", "?")}
- Command: `{info.get("command", "?")}`
- Machine and time: {info.get("machine", "?")}
- Checkpoint: stage `{doc.get("stage")}`, step {doc.get("step")}, exported with `sht export ... --weights`.

## Measured on 300-W Helen test ({len(test)} faces, never used in training or model selection)

Canonical 128 px crops, bicubic LR at each size; NME normalised by the outer eye corners; FR/AUC at 10 %;
PSNR/SSIM on the BT.601 Y channel of the 8-bit hallucinated face.

{table}

Cross-check with the independent scorer (`../shared/tools/score_detect.py ... 16 --faces`): `{cross}`.

Regenerate these numbers: `python benchmarks/model_card.py`.

## Known limits

- Trained on {info.get("faces", "a few thousand labeled faces")}, for a CPU budget
  ({info.get("machine", "?")}); it is far from the paper's GPU-scale models: expect NME around the figures above,
  worse on large poses, occlusion and faces unlike the training data.
- The input must be a face crop in the canonical convention; other framings (tight boxes, much looser crops)
  degrade accuracy. `Detector.detect` builds such crops from a face detector box and refines them.
- 64 px faces are resized to the 32 px input: detail beyond 32 px is only used by the face's bicubic base image,
  so it gains little over bicubic at 64 px.
- The face detector (Haar) misses profile faces; pass boxes (`--box`, `boxes=`) for those.
- Research use: the training data (300-W / Helen, YouTube Faces, All-Age-Faces) are for research use only.
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
