"""Train the DHLN and the FPTN variants that ``transfer_probe.py`` probes, on the benchmark's data protocol.

``dhln STEPS F OUT [key=value ...]``: stage-1 DHLN (Eq. 4) on the labeled fraction F (seed 0) of
``lowres_data.py``, validated on 200 of its validation faces. ``fptn STEPS F OUT [key=value ...]``: stage-2 FPTN
(Eq. 5-8) on the same labeled faces, validated (transfer L1 and ``val/pose_gap``) on 64 validation faces. Both
are the ``small`` preset with the given overrides, one thread. For example (the probe's inputs in RESULTS.md):

    python benchmarks/probe_train.py dhln 800 0.1 runs/exp/dhln-f0.1
    python benchmarks/probe_train.py fptn 300 0.1 runs/exp/fptn64w fptn.face_size=64 fptn.channels=32 \\
        fptn.max_channels=64 fptn.warp=0.06 "sht.fptn_lambdas=[0.01,1,1]"
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from lowres_data import load_lowres_data

from sht.config import load_config
from sht.train import FPTNStage, SupervisedStage, Trainer, seed_everything, set_threads

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CACHE = str(HERE.parent / ".cache" / "sht")


def main() -> None:
    if len(sys.argv) < 5 or sys.argv[1] not in ("dhln", "fptn"):
        sys.exit(__doc__)
    kind, steps, fraction, out, extra = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5:]
    set_threads(1)
    common = ["train.tensorboard=false", "train.progress=false", "train.threads=1", "train.device=cpu"]
    data = load_lowres_data(DATA, 128, 1.3, 1.5, fraction, 0, CACHE)
    if kind == "dhln":
        cfg = load_config("small", [f"train.steps={steps}", "train.eval_every=400", *common, "train.log_every=50"])
        val = data.val.subset(torch.linspace(0, len(data.val) - 1, 200).round().long())
        seed_everything(0)
        stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=data.labeled, val_faces=val)
    else:
        cfg = load_config(
            "small",
            [
                f"train.steps={steps}",
                f"train.eval_every={max(steps // 2, 1)}",
                *common,
                "train.log_every=25",
                f"fptn.vgg_weights={DATA / 'vgg19/vgg19_block1_caffe_bgr.npz'}",
                "train.warmup_steps=30",
                *extra,
            ],
        )
        val = data.val.subset(torch.linspace(0, len(data.val) - 1, 64).round().long())
        seed_everything(2)
        stage = FPTNStage(cfg, torch.device("cpu"), train_faces=data.labeled, val_faces=val)
        print(stage.evaluate(), flush=True)
    print(Trainer(cfg, stage, out).fit(), flush=True)


if __name__ == "__main__":
    main()
