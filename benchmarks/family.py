"""Where the release family switches models (``sht.infer.RELEASE_FAMILY``), chosen on the validation split.

Each member (or candidate checkpoint; smallest input first) is scored on the held-out photos of Helen train
(``300w:val``: never a test set) at LR sizes from 12 to 128 px (canonical crops, bicubic, 8-bit; 128: the HR crop).
Member k's boundary is the largest size S above member k-1's boundary such that member k is at least as accurate
(NME_io) as member k+1 at every tested size from there up to S; crops up to S px then go to member k. A member
that is worse than the next at once serves nothing (boundary None: drop it). Writes
``benchmarks/results/family.json`` and the ``family`` block of RESULTS.md. Each model runs with the flip test where
the release family does (``benchmarks/flip_test.py``).

    python benchmarks/family.py                                    # the shipped members
    python benchmarks/family.py --members A.safetensors B.safetensors C.safetensors
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
SIZES = (12, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128)
VAL = "300w:../shared/data/300w:val;offset=0"


def boundary(small: dict[int, float], large: dict[int, float], above: int = 0) -> int | None:
    """The largest tested size above ``above`` up to which ``small`` is never worse than ``large`` (None: worse
    at once)."""
    best = None
    for s in sorted(x for x in small if x > above):
        if small[s] > large[s]:
            break
        best = s
    return best


def boundaries(nme: list[dict[int, float]]) -> list[int | None]:
    """Each member's largest crop size but the last's (:func:`boundary` against the next member, above the
    previous member's boundary)."""
    out: list[int | None] = []
    for k in range(len(nme) - 1):
        prev = next((b for b in reversed(out) if b is not None), 0)
        out.append(boundary(nme[k], nme[k + 1], prev))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--members",
        nargs="+",
        default=[str(m[0]) for m in RELEASE_FAMILY if m[0].is_file()],
        help="the models, smallest input first (default: the shipped members of sht.infer.RELEASE_FAMILY)",
    )
    ap.add_argument("--val", nargs="+", default=[VAL], help="validation sources (never a test split)")
    ap.add_argument("--results", default=str(HERE / "results" / "family.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    if len(args.members) < 2:
        sys.exit("benchmarks/family.py: a family needs two or more --members")
    for p in args.members:
        if not Path(p).is_file():
            sys.exit(f"benchmarks/family.py: no weights at {p}")
    # each model with its flip test as the release family runs it (benchmarks/flip_test.py); off for other weights
    flips = {str(Path(m[0]).resolve()): m[2] for m in RELEASE_FAMILY}
    preds = [Predictor.from_checkpoint(p, flip=flips.get(str(Path(p).resolve()), False)) for p in args.members]
    cfg = preds[-1].config
    faces = load_eval_faces(args.val, cfg.model.face_size, cfg.data.margin)
    nme: list[dict[int, float]] = []
    for p in preds:
        res = evaluate_model(p.model, faces, p.codec, SIZES)
        nme.append({s: res[s].summary()["nme"] for s in SIZES})
        print(Path(p.source).name, {s: round(v, 2) for s, v in nme[-1].items()}, flush=True)
    bounds = boundaries(nme)
    doc = {
        "validation": args.val,
        "faces": len(faces),
        "sizes": list(SIZES),
        "models": [
            {"weights": Path(w).name, "input_size": p.input_size, "flip_test": p.flip, "nme": n}
            for w, p, n in zip(args.members, preds, nme, strict=True)
        ],
        "boundaries": bounds,
        "command": "python benchmarks/family.py",
    }
    Path(args.results).write_text(json.dumps(doc, indent=1))
    label = [
        f"{p.input_size} px input ({Path(w).name}{', flip test' * p.flip})"
        for w, p in zip(args.members, preds, strict=True)
    ]
    rows = [[lab] + [f"{n[s]:.2f}" for s in SIZES] for lab, n in zip(label, nme, strict=True)]
    rows.append(
        [
            "lowest NME: the input of",
            *[f"{preds[min(range(len(preds)), key=lambda k: nme[k][s])].input_size} px" for s in SIZES],
        ]
    )
    rule, lo = [], 0
    for k, p in enumerate(preds):
        hi = bounds[k] if k < len(bounds) else None
        if k < len(bounds) and hi is None:
            rule.append(f"the {p.input_size} px-input model serves no size (worse than the next one at once)")
            continue
        upto = f" up to **{hi} px**" if hi else ""
        rule.append(f"crops {f'above {lo} px' if lo else 'of any size'}{upto} go to the {p.input_size} px-input model")
        lo = hi or lo
    block = "\n".join(
        [
            "## The release family: which model for which crop size",
            "",
            f"NME_io (%) on the validation split ({len(faces)} faces of {', '.join(args.val)}: held-out photos of "
            "Helen train, never a test set), canonical crops reduced (bicubic, 8-bit) to each size (128 px: the HR "
            "crop itself):",
            "",
            markdown_table(["model", *[f"{s} px" for s in SIZES]], rows),
            "",
            f"Boundaries (`sht.infer.RELEASE_FAMILY`): {'; '.join(rule)}.",
            "",
            "Regenerate: `python benchmarks/family.py`",
        ]
    )
    update_block(args.md, "family", block)
    print(block)


if __name__ == "__main__":
    main()
