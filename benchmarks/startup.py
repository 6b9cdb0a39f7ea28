"""Start-up time of the command line: ``sht --help`` and ``sht detect`` on one 16 px crop, each a new process,
median of N runs. ``--src DIR ...`` measures the packages under those ``src`` folders (e.g. an older checkout)
with the runs interleaved, so that a busy machine slows every candidate alike.

    python benchmarks/startup.py [--runs 5] [--src /tmp/before/src src]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(cmd: list[str], src: str) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--src", nargs="+", default=[str(ROOT / "src")])
    args = ap.parse_args()
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        crop = Path(tmp) / "c16.png"
        Image.new("RGB", (16, 16), (150, 110, 90)).save(crop)
        commands = {
            "sht --help": [sys.executable, "-m", "sht", "--help"],
            "sht detect (one 16 px crop)": [sys.executable, "-m", "sht", "detect", str(crop), "--out", f"{tmp}/o.json"],
        }
        times: dict[tuple[str, str], list[float]] = {}
        for name, cmd in commands.items():
            for src in args.src:
                run(cmd, src)  # warm the file cache
            for _ in range(args.runs):
                for src in args.src:
                    times.setdefault((name, src), []).append(run(cmd, src))
    for src in args.src:
        parts = [f"{name}: {statistics.median(times[(name, src)]):.2f} s" for name in commands]
        print(f"{src}: " + "; ".join(parts) + f" (median of {args.runs})")


if __name__ == "__main__":
    main()
