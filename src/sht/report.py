"""Figures and tables people look at: CED curves, face panels with landmark overlays, training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from . import metrics  # noqa: E402


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed as given (format them first)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def plot_ced(curves: dict[str, np.ndarray], path: str | Path, threshold: float = 0.10, title: str = "") -> Path:
    """Cumulative error distribution of per-image NMEs, one curve per method, AUC in the legend."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, nmes in curves.items():
        xs, ys = metrics.ced(nmes, threshold)
        ax.plot(xs * 100, ys, label=f"{label} (AUC {metrics.auc(nmes, threshold):.3f})")
    ax.set_xlabel("NME (%)")
    ax.set_ylabel("fraction of images")
    ax.set_xlim(0, threshold * 100)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def draw_landmarks(
    img: Image.Image,
    points: np.ndarray | None,
    colour: tuple[int, int, int] = (0, 255, 0),
    radius: float | None = None,
    gt: np.ndarray | None = None,
) -> Image.Image:
    """A copy of ``img`` with landmarks as dots (and ground truth, if given, in red)."""
    out = img.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    r = radius if radius is not None else max(out.size[0] / 128, 1.0)
    for pts, col in ((gt, (255, 40, 40)), (points, colour)):
        if pts is None:
            continue
        for x, y in np.asarray(pts, dtype=np.float64):
            d.ellipse([x - r, y - r, x + r, y + r], fill=col)
    return out


def upscale(img: Image.Image, size: int, nearest: bool = True) -> Image.Image:
    return img.resize((size, size), Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC)


def face_grid(rows: Sequence[Sequence[Image.Image]], columns: Sequence[str], path: str | Path, cell: int = 128) -> Path:
    """A labelled grid of face images (every image resized to ``cell`` pixels, nearest for small ones)."""
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(1.6 * len(columns), 1.6 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            ax = axes[i][j]
            ax.imshow(np.asarray(upscale(im, cell, nearest=im.size[0] < cell)))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=8)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(
    series: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "", logy: bool = False
) -> Path:
    """Line plot of ``{label: [(step, value), ...]}``."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label, pts in series.items():
        if pts:
            s, v = zip(*pts, strict=True)
            ax.plot(s, v, label=label)
    ax.set_xlabel("step")
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
