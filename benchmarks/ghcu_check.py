"""GHCU's effect on a held-out slice of TRAINING data (never Helen test): train GHCU (``ghcu.*`` settings) on a
finished backbone run of ``lowres_sa.py``'s data and compare the validation slice's NME_io / FR10 with and without
it, per LR size. The validation labels carry the run's label noise, like everything the run saw.

    python benchmarks/ghcu_check.py benchmarks/runs/sa_defaults/n0.06/checkpoints/last.safetensors --noise 0.06
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lowres_sa import HERE, labeled_data, method_config

from sht.evaluation import evaluate_model
from sht.infer import Predictor
from sht.train import set_threads
from sht.train.semantic_alignment import train_ghcu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--preset", default="small")
    ap.add_argument("--noise", type=float, default=0.0)
    ap.add_argument("--ghcu-steps", type=int, default=None)
    ap.add_argument("--val-every", type=int, default=10)
    ap.add_argument("--out", default=None, help="GHCU run directory (default: beside the checkpoint)")
    ap.add_argument("--override", nargs="*", default=[])
    args = ap.parse_args()
    # the backbone's budget only sets the GHCU run's evaluation interval (min of steps / 3 and ghcu.steps)
    args.train_limit, args.steps, args.threads, args.device, args.progress = 0, 1500, 1, "cpu", False
    cfg = method_config(args, "DHLN", 0, args.noise)
    set_threads(1)
    train, val = labeled_data(args, cfg)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent.parent / "ghcu"
    ckpt = train_ghcu(cfg, args.checkpoint, out, train, val)
    doc = {"checkpoint": args.checkpoint, "ghcu": ckpt.as_posix(), "val_faces": len(val), "sizes": {}}
    for name, use in (("without", False), ("with", True)):
        pred = Predictor.from_checkpoint(ckpt, ghcu=use)
        for s, r in evaluate_model(pred.model, val, pred.codec, (16, 32, 64)).items():
            m = r.summary()
            doc["sizes"].setdefault(str(s), {})[name] = {"nme_io": m["nme"], "fr10": m["fr"], "auc10": m["auc"]}
    print(json.dumps(doc, indent=1))
    (out / "ghcu_check.json").write_text(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
