"""Figures and tables people look at: CED curves, face panels with landmark overlays, training curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import metrics


def _pyplot():  # noqa: ANN202
    """matplotlib's pyplot on the non-interactive Agg backend, imported when a plot is drawn (not for panels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; floats are printed as given (format them first)."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def plot_ced(curves: dict[str, np.ndarray], path: str | Path, threshold: float = 0.10, title: str = "") -> Path:
    """Cumulative error distribution of per-image NMEs, one curve per method, AUC in the legend."""
    plt = _pyplot()
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


def draw_boxes(
    img: Image.Image,
    boxes: Sequence[Sequence[float]],
    scores: Sequence[float | None] | None = None,
    scale: float = 1.0,
    colour: tuple[int, int, int] = (255, 200, 0),
) -> Image.Image:
    """A copy of ``img`` with boxes ``(x0, y0, x1, y1)`` (times ``scale``) and, where given, their scores."""
    out = img.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    for k, b in enumerate(boxes):
        x0, y0, x1, y1 = (float(v) * scale for v in b[:4])
        d.rectangle([x0, y0, x1, y1], outline=colour, width=1 if max(x1 - x0, y1 - y0) < 40 else 2)
        sc = scores[k] if scores is not None else None
        if sc is not None:
            d.text((x0, max(0.0, y0 - 11)), f"{sc:.2f}", fill=colour)
    return out


def upscale(img: Image.Image, size: int, nearest: bool = True) -> Image.Image:
    return img.resize((size, size), Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC)


def face_grid(rows: Sequence[Sequence[Image.Image]], columns: Sequence[str], path: str | Path, cell: int = 128) -> Path:
    """A labelled grid of face images (every image resized to ``cell`` pixels, nearest for small ones), drawn with
    PIL: a title row with the column names, then one row of cells per face, 4 px apart."""
    gap, head = 4, 18
    ncol = max(len(columns), max((len(r) for r in rows), default=0))
    out = Image.new("RGB", (ncol * cell + (ncol - 1) * gap, head + len(rows) * (cell + gap)), (255, 255, 255))
    d = ImageDraw.Draw(out)
    font = ImageFont.load_default(size=11)
    for j, name in enumerate(columns):
        x = j * (cell + gap)
        text = name
        while d.textlength(text, font=font) > cell and len(text) > 1:  # shorten names wider than the cell
            text = text[:-2] + "…"
        d.text((x + (cell - d.textlength(text, font=font)) / 2, 2), text, fill=(0, 0, 0), font=font)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            out.paste(
                upscale(im.convert("RGB"), cell, nearest=im.size[0] < cell), (j * (cell + gap), head + i * (cell + gap))
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path


def plot_curves(
    series: dict[str, list[tuple[int, float]]], path: str | Path, title: str = "", logy: bool = False
) -> Path:
    """Line plot of ``{label: [(step, value), ...]}``."""
    plt = _pyplot()
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


def detection_panel(
    image: Image.Image,
    landmarks: Sequence[np.ndarray],
    faces: Sequence[Image.Image | None],
    crops: Sequence[tuple[float, float, float]] | None,
    height: int = 256,
    boxes: Sequence[Sequence[float] | None] | None = None,
    box_scores: Sequence[float | None] | None = None,
) -> Image.Image:
    """``LR input | hallucinated face | landmarks on the input`` for a crop (``crops=None``), or, for a photo,
    the landmarks of every face on the photo (with its box and the face detector's score when given) followed by
    each face's crop and hallucinated face."""
    img = image.convert("RGB")
    scale = height / img.size[1]
    big = img.resize(
        (max(1, round(img.size[0] * scale)), height),
        Image.Resampling.NEAREST if scale > 1 else Image.Resampling.BICUBIC,
    )
    overlay = draw_landmarks(big, None)
    for pts in landmarks:
        overlay = draw_landmarks(overlay, np.asarray(pts) * scale, radius=max(1.5, height / 160))
    if boxes is not None:
        shown = [(b, None if box_scores is None else box_scores[k]) for k, b in enumerate(boxes) if b is not None]
        overlay = draw_boxes(overlay, [b for b, _ in shown], [sc for _, sc in shown], scale)
    tiles: list[Image.Image] = []
    if crops is None:
        tiles.append(big)
        tiles += [f.resize((height, height), Image.Resampling.BICUBIC) for f in faces if f is not None]
        tiles.append(overlay)
    else:
        tiles.append(overlay)
        for (x0, y0, side), f in zip(crops, faces, strict=True):
            cut = img.crop((round(x0), round(y0), round(x0 + side), round(y0 + side)))
            tiles.append(cut.resize((height // 2, height // 2), Image.Resampling.NEAREST))
            if f is not None:
                tiles.append(f.resize((height // 2, height // 2), Image.Resampling.BICUBIC))
    width = sum(t.size[0] for t in tiles) + 4 * (len(tiles) - 1)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.size[0] + 4
    return out
