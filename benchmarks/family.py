"""Where the release family switches models (``sht.infer.RELEASE_FAMILY``), chosen on the validation split.

Each member (or candidate checkpoint) is scored on the held-out photos of Helen train (``300w:val``: never a test
set) at LR sizes from 12 to 48 px (canonical crops, bicubic, 8-bit). The boundary is the largest size S such that
the smaller-input model is at least as accurate (NME_io) as the larger-input one at every tested size up to S;
crops up to S px then go to the smaller model. Writes ``benchmarks/results/family.json`` and the ``family`` block
of RESULTS.md. Each model runs with the flip test where the release family does (``benchmarks/flip_test.py``).

    python benchmarks/family.py                                    # the two shipped members
    python benchmarks/family.py --small runs/x/1-dhln/checkpoints/best.safetensors --label-small "x"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from results_block import update_block

from sht.evaluation import evaluate_model, load_eval_faces
from sht.infer import RELEASE_FAMILY, Predictor
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIZES = (12, 16, 20, 24, 28, 32, 40, 48)
VAL = "300w:../shared/data/300w:val;offset=0"


def boundary(small: dict[int, float], large: dict[int, float]) -> int | None:
    """The largest tested size up to which ``small`` is never worse than ``large`` (None: worse at once)."""
    best = None
    for s in sorted(small):
        if small[s] > large[s]:
            break
        best = s
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", default=str(RELEASE_FAMILY[0][0]), help="the smaller-input model")
    ap.add_argument("--large", default=str(RELEASE_FAMILY[-1][0]), help="the larger-input model")
    ap.add_argument("--val", nargs="+", default=[VAL], help="validation sources (never a test split)")
    ap.add_argument("--results", default=str(HERE / "results" / "family.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    for p in (args.small, args.large):
        if not Path(p).is_file():
            sys.exit(f"benchmarks/family.py: no weights at {p}")
    # each model with its flip test as the release family runs it (benchmarks/flip_test.py); off for other weights
    flips = {str(Path(m[0]).resolve()): m[2] for m in RELEASE_FAMILY}
    preds = {
        k: Predictor.from_checkpoint(p, flip=flips.get(str(Path(p).resolve()), False))
        for k, p in (("small", args.small), ("large", args.large))
    }
    cfg = preds["large"].config
    faces = load_eval_faces(args.val, cfg.model.face_size, cfg.data.margin)
    nme: dict[str, dict[int, float]] = {}
    for k, p in preds.items():
        res = evaluate_model(p.model, faces, p.codec, SIZES)
        nme[k] = {s: res[s].summary()["nme"] for s in SIZES}
        print(k, {s: round(v, 2) for s, v in nme[k].items()}, flush=True)
    b = boundary(nme["small"], nme["large"])
    doc = {
        "validation": args.val,
        "faces": len(faces),
        "sizes": list(SIZES),
        "models": {
            k: {
                "weights": str(Path(getattr(args, k)).name),
                "input_size": preds[k].input_size,
                "flip_test": preds[k].flip,
                "nme": nme[k],
            }
            for k in preds
        },
        "boundary": b,
        "command": "python benchmarks/family.py",
    }
    Path(args.results).write_text(json.dumps(doc, indent=1))
    rows = [
        [f"{preds[k].input_size} px input ({Path(getattr(args, k)).name}{', flip test' * preds[k].flip})"]
        + [f"{nme[k][s]:.2f}" for s in SIZES]
        for k in preds
    ]
    better = [preds["small" if nme["small"][s] <= nme["large"][s] else "large"].input_size for s in SIZES]
    rows.append(["lower NME: the input of", *[f"{i} px" for i in better]])
    block = "\n".join(
        [
            "## The release family: which model for which crop size",
            "",
            f"NME_io (%) on the validation split ({len(faces)} faces of {', '.join(args.val)}: held-out photos of "
            "Helen train, never a test set), canonical crops reduced (bicubic, 8-bit) to each size:",
            "",
            markdown_table(["model", *[f"{s} px" for s in SIZES]], rows),
            "",
            f"Boundary: crops up to **{b} px** go to the {preds['small'].input_size} px-input model "
            f"(`sht.infer.RELEASE_FAMILY`), the rest to the {preds['large'].input_size} px-input one."
            if b
            else "The smaller-input model is not better at any size: no boundary.",
            "",
            "Regenerate: `python benchmarks/family.py`",
        ]
    )
    update_block(args.md, "family", block)
    print(block)


if __name__ == "__main__":
    main()
