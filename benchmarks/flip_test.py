"""Whether each release member runs the flip test (``sht.models.flip.FlipTest``), chosen on the validation split.

Each member is scored with and without the flip test on the held-out photos of Helen train (``300w:val``: never a
test set), canonical crops reduced (bicubic, 8-bit) to each LR size (128: the HR crop itself). A member gets the
flip test (``sht.infer.RELEASE_FAMILY``'s third field) when it lowers the mean validation NME_io over the sizes
that member serves under the family's boundaries (member k: the crops above member k-1's boundary up to its own;
the last member: the rest). Writes ``benchmarks/results/flip_test.json`` and the ``flip-test`` block of RESULTS.md.

    python benchmarks/flip_test.py
    python benchmarks/flip_test.py --weights A.safetensors B.safetensors C.safetensors --boundaries 20 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from results_block import update_block

from sht.evaluation import evaluate_model, load_eval_faces
from sht.infer import RELEASE_FAMILY, Predictor
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent
SIZES = (12, 16, 20, 24, 32, 40, 48, 64, 96, 128)
VAL = "300w:../shared/data/300w:val;offset=0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--weights",
        nargs="+",
        default=[str(m[0]) for m in RELEASE_FAMILY if m[0].is_file()],
        help="the members, smallest first",
    )
    ap.add_argument(
        "--boundaries",
        nargs="*",
        type=int,
        default=None,
        help="each member's largest crop side but the last's (default: sht.infer.RELEASE_FAMILY's)",
    )
    ap.add_argument("--val", nargs="+", default=[VAL], help="validation sources (never a test split)")
    ap.add_argument("--results", default=str(HERE / "results" / "flip_test.json"))
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.boundaries is None:
        shipped = {str(m[0]) for m in RELEASE_FAMILY}
        if not set(args.weights) <= shipped:
            sys.exit("benchmarks/flip_test.py: give --boundaries for weights outside sht.infer.RELEASE_FAMILY")
        args.boundaries = [m[1] for m in RELEASE_FAMILY if str(m[0]) in args.weights][:-1]
    if len(args.boundaries) != len(args.weights) - 1 or args.boundaries != sorted(set(args.boundaries)):
        sys.exit("benchmarks/flip_test.py: --boundaries needs one increasing size per member but the last")
    for p in args.weights:
        if not Path(p).is_file():
            sys.exit(f"benchmarks/flip_test.py: no weights at {p}")
    doc: dict = {"validation": args.val, "sizes": list(SIZES), "boundaries": args.boundaries, "members": []}
    edges = [0, *args.boundaries, 10**9]
    rows = []
    for k, w in enumerate(args.weights):
        served = [s for s in SIZES if edges[k] < s <= edges[k + 1]]
        entry: dict = {"weights": Path(w).name, "serves": served}
        for flip in (False, True):
            pred = Predictor.from_checkpoint(w, flip=flip)
            faces = load_eval_faces(args.val, pred.face_size, pred.config.data.margin)
            res = evaluate_model(pred.model, faces, pred.codec, SIZES)
            entry["flip" if flip else "plain"] = {
                "nme": {s: res[s].summary()["nme"] for s in SIZES},
                "psnr": {s: res[s].summary().get("psnr") for s in SIZES if s < pred.face_size},
            }
            doc["faces"] = len(faces)
            rows.append(
                [f"{Path(w).name} {'flip test' if flip else 'plain'}"]
                + [f"{entry['flip' if flip else 'plain']['nme'][s]:.2f}" for s in SIZES]
                + [f"{np.mean([entry['flip' if flip else 'plain']['nme'][s] for s in served]):.3f}"]
            )
            print(rows[-1], flush=True)
        gain = np.mean([entry["plain"]["nme"][s] - entry["flip"]["nme"][s] for s in served])
        entry["nme_gain_served"] = float(gain)
        entry["flip_test"] = bool(gain > 0)
        doc["members"].append(entry)
    doc["command"] = "python benchmarks/flip_test.py"
    Path(args.results).write_text(json.dumps(doc, indent=1))
    choice = "; ".join(
        f"`{m['weights']}` {'on' if m['flip_test'] else 'off'} ({m['nme_gain_served']:+.3f} points of NME_io on the "
        f"sizes it serves)"
        for m in doc["members"]
    )
    psnr = "; ".join(
        f"`{m['weights']}` "
        + ", ".join(
            f"{s} px {m['plain']['psnr'][s]:.2f} -> {m['flip']['psnr'][s]:.2f}"
            for s in m["serves"]
            if s in m["plain"]["psnr"]
        )
        for m in doc["members"]
    )
    bounds = ", ".join(map(str, args.boundaries))
    block = "\n".join(
        [
            "## Flip test: which release member averages each face with its mirror image",
            "",
            f"NME_io (%) on the validation split ({doc['faces']} faces of {', '.join(args.val)}: held-out photos of "
            "Helen train, never a test set), canonical crops reduced (bicubic, 8-bit) to each size (128: the HR crop), "
            "each member without and with the flip test (`sht.models.flip.FlipTest`: the crop and its mirror image, "
            "heatmaps flipped back with left/right landmarks swapped, hallucinated faces flipped back, both averaged; "
            f"twice the work). Mean: over the sizes the member serves (boundaries {bounds} px).",
            "",
            markdown_table(["model", *[f"{s} px" for s in SIZES], "mean (served)"], rows),
            "",
            f"Chosen (flip test where it lowers that mean): {choice}. Validation PSNR_Y (dB, plain -> flip test): "
            f"{psnr}.",
            "",
            "Regenerate: `python benchmarks/flip_test.py`",
        ]
    )
    update_block(args.md, "flip-test", block)
    print(block)


if __name__ == "__main__":
    main()
