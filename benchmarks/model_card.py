"""Regenerate MODEL_CARD.md from the shipped weights: measured NME / FR / AUC / PSNR / SSIM at 16/32/64 px and
on the full-resolution (128 px HR) canonical crop of 300-W Helen test (the canonical protocol of
``sht.evaluation``), with bicubic and dlib's 68-point model (``sht.evaluation.evaluate_dlib``) measured in the same
run beside each, issue 14's targets against what is reached, and the independent scorer's line as a cross-check.
Also writes ``benchmarks/results/model_card.json``.

    python benchmarks/model_card.py [--data ../shared/data]   # the release family of sht.infer.RELEASE_FAMILY
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from sht.checkpoint import read_checkpoint
from sht.evaluation import evaluate_bicubic, evaluate_dlib, evaluate_model, load_eval_faces
from sht.infer import Predictor, release_predictor
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LR_SIZES = (16, 32, 64)
FULL = 128  # the HR canonical crop: "full resolution" (score_detect.py's LR >= 128)
# issue 14's targets: NME_io % at most, PSNR_Y at least bicubic + dB (None: no face target)
TARGETS = {16: (4.3, 1.8), 32: (3.8, 0.0), 64: (3.3, 0.0), FULL: (3.2, None)}


def member_info(pred: Predictor) -> tuple[dict, dict]:
    """A member's provenance note and checkpoint header."""
    _, doc = read_checkpoint(pred.source)
    return json.loads(doc.get("note") or "{}"), doc


def describe(pred: Predictor, max_side: int | None, above: int | None = None) -> str:
    """One member of the release family: architecture, size, the crops it takes (above the previous member's
    ``above``, up to ``max_side``) and how it was trained."""
    info, doc = member_info(pred)
    m = pred.config.model
    path = Path(pred.source)
    if max_side:
        takes = f"crops above {above} px up to {max_side} px" if above else f"crops up to {max_side} px"
    else:
        takes = f"crops above {above} px" if above else "crops of every size"
    lr = ", ".join(str(v) for v in dict.fromkeys(pred.config.data.lr_sizes))
    flip = (
        "on (each crop and its mirror image, averaged: twice the work; chosen on validation, benchmarks/flip_test.py)"
        if pred.flip
        else "off (benchmarks/flip_test.py; `Detector(flip=True)` / `--flip on` turns it on)"
    )
    return f"""### `{path.name}`: {m.input_size} px input, for {takes}

A DHLN (paper §3.1: stacked-hourglass landmark stream + face-hallucination stream, fused by FUBlock1/FUBlock2) with
the `small` preset: {m.input_size}x{m.input_size} input and heatmaps, {m.num_stacks} stacks x {m.channels} channels,
{m.num_stacks} SR modules x {m.sr_blocks} SRBlocks x {m.sr_channels} channels, face hallucinated at
{m.face_size}x{m.face_size}, 68 iBUG points. {pred.num_parameters / 1e6:.2f}M parameters, stored in
{doc.get("dtype", "float16")} ({path.stat().st_size / 1e6:.1f} MB). Trained on {lr} px faces (bicubic, 8-bit), resized
to {m.input_size} px. FPTN, used in training, is not part of it.

- Recipe: {info.get("recipe", doc.get("stage", "?"))}
- Data: {info.get("data", "?")}; {info.get("faces", "?")}
- Validation (model selection): {info.get("validation", "none recorded")}
- Selection: {info.get("selection", "none recorded")}
- Released: {info.get("choice", "?")}
- Command: `{info.get("command", "?")}`
- Machine and time: {info.get("machine", "?")}
- Checkpoint: stage `{doc.get("stage")}`, step {doc.get("step")}, exported with `sht export ... --weights`.
- Flip test at inference: {flip}.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "MODEL_CARD.md"))
    args = ap.parse_args()
    data = Path(args.data)
    test_dir = data / "300w" / "helen" / "testset"
    if not test_dir.is_dir():
        sys.exit(f"Helen test not found at {test_dir}")
    pred = release_predictor()
    members = getattr(pred, "members", [(pred, None)])
    cfg = pred.config
    test = load_eval_faces([str(test_dir)], cfg.model.face_size, cfg.data.margin)
    sizes = (*LR_SIZES, FULL)
    each = {p.source: evaluate_model(p.model, test, p.codec, sizes) for p, _ in members}
    res = {s: each[pred.member_for(s).source][s] for s in sizes}
    bic = evaluate_bicubic(test, LR_SIZES)
    dl, hog = evaluate_dlib(test, sizes)
    rows, targets, doc_rows = [], [], []
    for s in sizes:
        m, d = res[s].summary(), dl[s].summary()
        b = bic[s].summary() if s in bic else {}
        full = s == FULL
        rows.append(
            [
                "full (128 px HR crop)" if full else s,
                Path(pred.member_for(s).source).stem,
                f"{m['nme']:.2f}",
                f"{m['fr']:.1f}",
                f"{m['auc']:.3f}",
                "-" if full else f"{m['psnr']:.2f}",
                "-" if full else f"{m['ssim']:.4f}",
                "-" if full else f"{b['psnr']:.2f}",
                "-" if full else f"{b['ssim']:.4f}",
                f"{d['nme']:.2f}",
                f"{d['fr']:.1f}",
                f"{100 * hog[s]:.0f}",
            ]
        )
        t_nme, t_db = TARGETS[s]
        nme_ok = m["nme"] <= t_nme
        cells = ["full" if full else s, f"<= {t_nme}", f"{m['nme']:.2f}", "met" if nme_ok else "**not met**"]
        if t_db is None:
            cells += ["-", "-", "-"]
        else:
            db_ok = m["psnr"] >= b["psnr"] + t_db
            cells += [
                f">= {b['psnr'] + t_db:.2f} (bicubic + {t_db})",
                f"{m['psnr']:.2f}",
                "met" if db_ok else "**not met**",
            ]
        targets.append(cells)
        doc_rows.append(
            {
                "lr": "full" if full else s,
                "model": Path(pred.member_for(s).source).name,
                "nme_io": m["nme"],
                "fr10": m["fr"],
                "auc10": m["auc"],
                "psnr_y": None if full else m["psnr"],
                "ssim_y": None if full else m["ssim"],
                "bicubic_psnr_y": b.get("psnr"),
                "bicubic_ssim_y": b.get("ssim"),
                "dlib_nme_io": d["nme"],
                "dlib_fr10": d["fr"],
                "dlib_hog_found": hog[s],
            }
        )
    table = markdown_table(
        [
            "LR px",
            "model",
            "NME_io %",
            "FR10 %",
            "AUC10",
            "PSNR_Y dB",
            "SSIM_Y",
            "bicubic PSNR_Y",
            "bicubic SSIM_Y",
            "dlib NME_io %",
            "dlib FR10 %",
            "dlib HOG finds the face %",
        ],
        rows,
    )
    target_table = markdown_table(["LR px", "NME_io target", "reached", "", "PSNR_Y target dB", "reached", ""], targets)
    out_json = HERE / "results" / "model_card.json"
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(
        json.dumps(
            {
                "weights": [Path(p.source).name for p, _ in members],
                "family": [[Path(p.source).name, m] for p, m in members],
                "each_model": {
                    Path(k).name: {("full" if s == FULL else s): r[s].summary()["nme"] for s in sizes}
                    for k, r in each.items()
                },
                "test": str(test_dir),
                "faces": len(test),
                "rows": doc_rows,
                "command": "python benchmarks/model_card.py",
            },
            indent=1,
        )
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
            ],
            capture_output=True,
            text=True,
        )
        cross = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else f"failed: {r.stderr[-200:]}"
    names = " + ".join(f"`{Path(p.source).name}`" for p, _ in members)
    rule = "; ".join(
        (f"crops up to {mx} px: `{Path(p.source).stem}`" if mx else f"larger: `{Path(p.source).stem}`")
        for p, mx in members
    )  # each member takes the crops above the previous one's size
    each_table = markdown_table(
        ["model", *[("full" if s == FULL else f"{s} px") for s in sizes]],
        [[Path(k).stem, *[f"{r[s].summary()['nme']:.2f}" for s in sizes]] for k, r in each.items()],
    )
    text = f"""# Model card: the release models shipped with sht

`sht.Detector()` and `sht detect` (without `--weights`) load the release family {names} from
`src/sht/weights/` (`sht.infer.RELEASE_FAMILY`, `release_predictor()`): each face crop goes to one model by its
size ({rule}), the boundaries chosen on the validation split (`python benchmarks/family.py`, benchmarks/RESULTS.md
"The release family"). In photo and video mode the crop is taken at the face's native resolution, so the face's
size picks the model.

Input: a face crop in the canonical convention (square, centred on the 68-point box, side 1.3x its larger side) at
any resolution. Output: 68 landmarks in the crop's pixels and a {cfg.model.face_size} px hallucinated face. For whole
photos, `Detector.detect` finds faces first (sht's own face detector, `sht/weights/face-detector.safetensors`;
OpenCV Haar or dlib HOG on request), crops them and re-centres the crop on the landmarks.

## What they are and how they were trained

{chr(10).join(describe(p, mx, members[k - 1][1] if k else None) for k, (p, mx) in enumerate(members))}
## Measured on 300-W Helen test ({len(test)} faces, never used in training or model selection)

Canonical 128 px crops, bicubic LR at each size ("full": the 128 px crop itself); NME normalised by the outer eye
corners; FR/AUC at 10 %; PSNR/SSIM on the BT.601 Y channel of the 8-bit hallucinated face. dlib, measured in the
same run: its 68-point shape predictor on the bicubic-upsampled 128 px crop, in the box of its own HOG detector
(upsampled once; the largest face) or the true landmark box where HOG finds nothing (`sht.evaluation.evaluate_dlib`).
The project's peer anchors for dlib (6.70 / 4.22 / 3.52 / 3.42 % at 16 / 32 / 64 px / full resolution) were measured
with a protocol whose details (HOG upsampling, box choice, crop resolution) are not recorded; the same-run dlib
figures in this table are the comparison.

{table}

Each model of the family at every size (NME_io %; the table above takes each size from its model):

{each_table}

Issue 14's targets for the release model against what it reaches:

{target_table}

What was tried for the targets not met (each step's numbers are in this card's history and in
benchmarks/RESULTS.md, with their commands):

- More labeled faces: All-Age-Faces labeled by dlib's shape predictor (`sht data label --teacher dlib`; 13030 faces)
  beside Helen train and YouTube-Faces, for both members. The 32 px member was fine-tuned from the earlier 3000-step
  model (`train.init`) for 4000 steps on the sizes it serves (24-64 px): Helen test NME_io 4.70 -> 4.21 % at 32 px
  with the flip test below (MODEL_CARD.md at commit a52bfc9 had 4.70 / 4.71 / 4.70 % at 32 / 64 px / full).
- The flip test (each crop and its mirror image, averaged; `benchmarks/flip_test.py`, chosen on validation, its
  numbers in benchmarks/RESULTS.md, "Flip test"): on for the 32 and 64 px members, where it lowers validation
  NME_io on the sizes they serve; off for the 16 px member, where it adds a little PSNR_Y but no accuracy, for
  twice the work.
- A 64 px-input member for the crops above 32 px, so that 64 px and larger faces keep their detail: started from
  the 32 px member (`train.init`, with `train.init_skip: [sr_tail]` since its SR tail upsamples x2, not x4) and
  trained 3000 steps on LR sizes 40-128 with the same data (`benchmarks/configs/release-small64.yaml`; the
  training time is in its description above). It takes over from the 32 px member where it starts winning on
  validation (`benchmarks/family.py`).
- Not tried for lack of CPU time: stages 2-4 of SHT for the release members; a longer schedule for the 64 px
  member (its best validation checkpoint was step 2500 of 3000, as its weights' note records) and for the 16 px
  member (8000 steps, 46 min on one core).

Cross-check with the independent scorer (`../shared/tools/score_detect.py ... 16 --faces`): `{cross}`.

Regenerate these numbers: `python benchmarks/model_card.py`.

## Known limits

- Trained for a CPU budget on a few thousand manually labeled faces (and, where its card says so, All-Age-Faces
  with dlib's landmarks as labels, which carry dlib's own errors); far from the paper's GPU-scale models: expect NME
  around the figures above, worse on large poses, occlusion and faces unlike the training data.
- The input must be a face crop in the canonical convention; other framings (tight boxes, much looser crops)
  degrade accuracy. `Detector.detect` builds such crops from a face detector box and refines them.
- Faces larger than 64 px are resized to the 64 px member's input: detail beyond 64 px is only used by the face's
  bicubic base image.
- The face detectors miss some faces (sht's: benchmarks/RESULTS.md, "Face detection"; Haar: most faces below
  24 px and profiles); pass boxes (`--box`, `boxes=`) for those.
- Research use: the training data (300-W / Helen, YouTube Faces, All-Age-Faces) are for research use only.
"""
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
