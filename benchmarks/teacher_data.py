"""What All-Age-Faces with dlib's landmarks as labels (``sht data label --teacher dlib``; the paper's CelebA
protocol of teacher landmarks as ground truth) adds to a model, and where the teacher's own error caps it.

Two stage-1 runs of the same config that differ only in ``data.train`` (with and without the labeled All-Age-Faces
folder), compared on the validation split (Helen train's held-out photos) at every evaluation step they share,
and their best checkpoints at 12 / 16 / 24 px; beside them dlib itself, the teacher, on the same validation faces:
its shape predictor on the full-resolution crop (the setting in which it labeled All-Age-Faces's 128 px crops) and
on the bicubic-upsampled 16 px crop (``sht.evaluation.evaluate_dlib``). Helen test is reported for both models
as information only: nothing here is chosen on it. Writes ``benchmarks/results/teacher_data.json`` and the
``teacher-data`` block of RESULTS.md.

    python benchmarks/teacher_data.py --with runs/release-small16/1-dhln --without runs/small16-noaaf/1-dhln
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from results_block import update_block

from sht.evaluation import evaluate_dlib, evaluate_model, load_eval_faces
from sht.infer import Predictor
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = (12, 16, 24)
VAL = "300w:../shared/data/300w:val;offset=0"


def val_curve(run: Path, size: int) -> dict[int, float]:
    """``step -> val/nme@size`` (%) of a run's metrics.csv (the last value logged at a step)."""
    out: dict[int, float] = {}
    with (run / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row["tag"] == f"val/nme@{size}":
                out[int(row["step"])] = float(row["value"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--with", dest="with_", required=True, help="run dir trained with the teacher-labeled faces")
    ap.add_argument("--without", required=True, help="run dir of the same config without them")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--results", default=str(HERE / "results" / "teacher_data.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    runs = {"with": Path(args.with_), "without": Path(args.without)}
    for r in runs.values():
        if not (r / "checkpoints" / "best.safetensors").is_file():
            sys.exit(f"benchmarks/teacher_data.py: no best checkpoint in {r}")
    preds = {k: Predictor.from_checkpoint(r / "checkpoints" / "best.safetensors") for k, r in runs.items()}
    cfg = preds["with"].config
    val = load_eval_faces([VAL], cfg.model.face_size, cfg.data.margin)
    test = load_eval_faces([str(Path(args.data) / "300w" / "helen" / "testset")], cfg.model.face_size, cfg.data.margin)
    curves = {k: val_curve(r, 16) for k, r in runs.items()}
    shared = sorted(set(curves["with"]) & set(curves["without"]))
    scores = {
        k: {
            "val": {s: r.summary()["nme"] for s, r in evaluate_model(p.model, val, p.codec, SIZES).items()},
            "test16": evaluate_model(p.model, test, p.codec, [16])[16].summary()["nme"],
        }
        for k, p in preds.items()
    }
    dl, _ = evaluate_dlib(val, [16, val.size])
    teacher = {"full": dl[val.size].summary()["nme"], 16: dl[16].summary()["nme"]}
    doc = {
        "runs": {k: str(r) for k, r in runs.items()},
        "train": {k: p.config.data.train for k, p in preds.items()},
        "validation": VAL,
        "val_faces": len(val),
        "curve_val_nme16": {k: {s: curves[k][s] for s in shared} for k in runs},
        "best": scores,
        "teacher_dlib_val": teacher,
        "command": "python benchmarks/teacher_data.py " + " ".join(sys.argv[1:]),
    }
    Path(args.results).write_text(json.dumps(doc, indent=1))
    curve_rows = [[s, f"{curves['without'][s]:.2f}", f"{curves['with'][s]:.2f}"] for s in shared]
    best_rows = [
        [label, *[f"{scores[k]['val'][s]:.2f}" for s in SIZES], f"{scores[k]['test16']:.2f}"]
        for k, label in (("without", "without All-Age-Faces"), ("with", "with All-Age-Faces (dlib labels)"))
    ]
    best_rows.append(
        [
            "dlib, the teacher (16 px crop upsampled to 128 px)",
            *[f"{teacher[16]:.2f}" if s == 16 else "" for s in SIZES],
            "",
        ]
    )
    m = cfg.model
    block = "\n".join(
        [
            "## Teacher-labeled faces: what All-Age-Faces with dlib's landmarks adds (issue 14)",
            "",
            f"Stage 1 of the {m.input_size} px-input DHLN small, the same config with and without the 13,030 "
            "All-Age-Faces crops that `sht data label ../shared/data/aaf128 --teacher dlib` labels (of 13,322; "
            "dlib's HOG finds no face in the rest). Validation NME_io (%) at 16 px on "
            f"{len(val)} held-out Helen-train faces, at the evaluation steps both runs have:",
            "",
            markdown_table(["step", "without", "with"], curve_rows),
            "",
            "Best checkpoints (chosen by each run on the validation split), validation NME_io at each size, and "
            "Helen test at 16 px for information (not used for any choice):",
            "",
            markdown_table(["training data", *[f"val {s} px" for s in SIZES], "Helen test 16 px"], best_rows),
            "",
            f"The teacher caps what its labels can teach: dlib's own error on these validation faces is "
            f"{teacher['full']:.2f} % at full resolution, the setting in which it labeled All-Age-Faces.",
            "",
            f"Regenerate: `{doc['command']}`",
        ]
    )
    update_block(args.md, "teacher-data", block)
    print(block)


if __name__ == "__main__":
    main()
