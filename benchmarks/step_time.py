"""Seconds per training step (batch of the preset, 1 thread) of a configured model on generated faces.

Used to size JASRNet's ``small`` preset against DHLN ``small`` (numbers in ``sht.config.PRESETS``):

    python benchmarks/step_time.py --preset small                              # DHLN small
    python benchmarks/step_time.py --preset small --override model.arch=jasrnet # JASRNet small
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sht.config import load_config
from sht.data.dataset import load_source
from sht.models.dhln import count_parameters
from sht.train.stages import SupervisedStage


def step_times(preset: str, overrides: list[str], steps: int, warmup: int) -> tuple[list[float], int]:
    """CPU seconds of this process for each of ``steps`` training steps after ``warmup`` untimed ones, and the
    parameter count. CPU time, not wall time: the machine is shared, and with one thread the process time is what
    the step costs whatever else runs."""
    cfg = load_config(preset, ["train.device=cpu", "train.amp=false", *overrides])
    faces = load_source(f"synthetic:{cfg.train.batch_size * 4}:7", cfg.model.face_size, cfg.data.margin, 1.5)
    stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=faces, val_faces=None)
    times = []
    for i in range(warmup + steps):
        t0 = time.process_time()
        stage.train_step(i)
        if i >= warmup:
            times.append(time.process_time() - t0)
    return times, count_parameters(stage.model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--override", nargs="*", default=[])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    times, n = step_times(args.preset, args.override, args.steps, args.warmup)
    print(
        f"{args.preset} {' '.join(args.override)}: {n / 1e6:.3f}M parameters, "
        f"median {statistics.median(times):.3f} CPU s per step (min {min(times):.3f}, max {max(times):.3f}, "
        f"{len(times)} steps, {args.threads} thread)"
    )


if __name__ == "__main__":
    main()
