"""Training logs: one CSV per run (appended across resumes) and TensorBoard scalars when it is installed."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class MetricLogger:
    """Write ``step, tag, value`` rows to ``<dir>/metrics.csv`` and, optionally, TensorBoard."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, enabled: bool = True) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.csv"
        self._tb: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(["step", "tag", "value"])
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(out_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

    def log(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for tag, v in values.items():
            self._csv.writerow([step, tag, f"{float(v):.6g}"])
            if self._tb is not None:
                self._tb.add_scalar(tag, float(v), step)
        self._fh.flush()

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (rows of an interrupted run that a resume will redo)."""
        if not self.enabled or not self.path.exists():
            return
        self._fh.close()
        with open(self.path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        keep = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) <= step]
        with open(self.path, "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(keep)
        self._fh = open(self.path, "a", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh)

    def close(self) -> None:
        if self.enabled:
            self._fh.close()
            if self._tb is not None:
                self._tb.close()


def read_metrics(path: str | Path) -> dict[str, list[tuple[int, float]]]:
    """Read a ``metrics.csv`` back into ``{tag: [(step, value), ...]}``."""
    out: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.setdefault(row["tag"], []).append((int(row["step"]), float(row["value"])))
    return out
