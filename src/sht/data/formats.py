"""Annotation formats and landmark schemes.

Coordinates everywhere: x right, y down, in pixels, the image spanning ``[0, W] x [0, H]`` so that the centre of
pixel ``(i, j)`` is ``(i + 0.5, j + 0.5)``. The 300-W ``.pts`` files on disk use that convention as well (the
shared data were converted from the original 1-based pixel-centre convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class DataError(ValueError):
    """A data file or folder that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class LandmarkScheme:
    """A landmark layout: point count, horizontal-flip permutation and the points each normaliser uses."""

    name: str
    num_points: int
    flip: tuple[int, ...]
    outer_eyes: tuple[int, int]
    left_eye: tuple[int, ...] = ()
    right_eye: tuple[int, ...] = ()
    jaw: tuple[int, ...] = ()
    groups: dict[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if sorted(self.flip) != list(range(self.num_points)):
            raise ValueError(f"{self.name}: flip must be a permutation of 0..{self.num_points - 1}")


def _ibug68_flip() -> tuple[int, ...]:
    perm = list(range(68))
    pairs = [(i, 16 - i) for i in range(8)]  # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]  # brows
    pairs += [(31, 35), (32, 34)]  # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]  # mouth
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


IBUG68 = LandmarkScheme(
    name="ibug68",
    num_points=68,
    flip=_ibug68_flip(),
    outer_eyes=(36, 45),
    left_eye=tuple(range(36, 42)),
    right_eye=tuple(range(42, 48)),
    jaw=tuple(range(17)),
    groups={
        "jaw": tuple(range(0, 17)),
        "brows": tuple(range(17, 27)),
        "nose": tuple(range(27, 36)),
        "eyes": tuple(range(36, 48)),
        "mouth": tuple(range(48, 68)),
    },
)

SCHEMES: dict[int, LandmarkScheme] = {68: IBUG68}


def scheme_for(num_points: int) -> LandmarkScheme:
    """The landmark scheme with ``num_points`` points."""
    try:
        return SCHEMES[num_points]
    except KeyError:
        raise DataError(
            f"no landmark scheme with {num_points} points (known: {', '.join(map(str, sorted(SCHEMES)))})"
        ) from None


def _check_points(pts: np.ndarray, where: str, num_points: int | None) -> np.ndarray:
    if num_points is not None and pts.shape[0] != num_points:
        raise DataError(f"{where}: expected {num_points} points, found {pts.shape[0]}")
    if not np.all(np.isfinite(pts)):
        raise DataError(f"{where}: coordinates contain NaN or inf")
    return pts


def parse_pts(text: str, where: str = "<pts>", num_points: int | None = None) -> np.ndarray:
    """Parse the 300-W ``.pts`` format (``version``, ``n_points``, ``{``, one ``x y`` per line, ``}``)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    declared: int | None = None
    body: list[str] | None = None
    for i, ln in enumerate(lines):
        low = ln.lower()
        if low.startswith("n_points"):
            try:
                declared = int(ln.split(":", 1)[1])
            except (IndexError, ValueError):
                raise DataError(f"{where}: bad n_points line {ln!r}") from None
        elif ln == "{":
            try:
                end = lines.index("}", i + 1)
            except ValueError:
                raise DataError(f"{where}: no closing '}}'") from None
            body = lines[i + 1 : end]
            break
    if body is None:
        raise DataError(f"{where}: not a .pts file (no '{{' ... '}}' block)")
    rows = []
    for ln in body:
        parts = ln.replace(",", " ").split()
        if len(parts) != 2:
            raise DataError(f"{where}: expected 'x y' per line, got {ln!r}")
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except ValueError:
            raise DataError(f"{where}: non-numeric coordinate in {ln!r}") from None
    pts = np.asarray(rows, dtype=np.float64).reshape(-1, 2)
    if declared is not None and declared != pts.shape[0]:
        raise DataError(f"{where}: n_points says {declared} but {pts.shape[0]} points follow")
    return _check_points(pts, where, num_points)


def read_pts(path: str | Path, num_points: int | None = None) -> np.ndarray:
    """Read a 300-W ``.pts`` file into a ``(K, 2)`` float64 array."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError:
        raise DataError(f"{p}: file not found") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{p}: cannot read ({exc.__class__.__name__})") from None
    return parse_pts(text, str(p), num_points)


def format_pts(points: np.ndarray) -> str:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    rows = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    return f"version: 1\nn_points:  {len(pts)}\n{{\n{rows}\n}}\n"


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write a ``(K, 2)`` array in the 300-W ``.pts`` format."""
    pts = np.asarray(points, dtype=np.float64)
    if not np.all(np.isfinite(pts)):
        raise DataError(f"{path}: refusing to write NaN/inf coordinates")
    Path(path).write_text(format_pts(pts), encoding="utf-8")


@dataclass(frozen=True)
class LabeledImage:
    """One image and its landmarks (in that image's pixel coordinates)."""

    image: Path
    points: np.ndarray

    @property
    def name(self) -> str:
        return self.image.stem


def find_image_for(pts_path: Path) -> Path | None:
    for suf in IMAGE_SUFFIXES:
        for cand in (pts_path.with_suffix(suf), pts_path.with_suffix(suf.upper())):
            if cand.is_file():
                return cand
    return None


@dataclass
class ScanReport:
    """What a folder scan found: usable samples and one line per problem."""

    samples: list[LabeledImage]
    problems: list[str]


def scan_pts_folder(
    folder: str | Path, num_points: int | None = 68, strict: bool = False, recursive: bool = False
) -> ScanReport:
    """Collect ``image + .pts`` pairs from a folder. Bad or unmatched files are listed in ``problems`` (or
    raise in ``strict`` mode); an empty or missing folder is always an error."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    pts_files = sorted(root.rglob("*.pts") if recursive else root.glob("*.pts"))
    if not pts_files:
        raise DataError(f"{root}: no .pts files found (expected images with 68-point .pts files beside them)")
    samples: list[LabeledImage] = []
    problems: list[str] = []
    for p in pts_files:
        img = find_image_for(p)
        try:
            if img is None:
                raise DataError(f"{p}: no image beside it ({'/'.join(IMAGE_SUFFIXES)})")
            samples.append(LabeledImage(img, read_pts(p, num_points)))
        except DataError as exc:
            if strict:
                raise
            problems.append(str(exc))
    if not samples:
        raise DataError(f"{root}: none of {len(pts_files)} annotations is usable; first problem: {problems[0]}")
    return ScanReport(samples, problems)


def landmark_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` of the points."""
    lo, hi = points.min(0), points.max(0)
    return float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1])


def mirror_points(points: np.ndarray, width: float, scheme: LandmarkScheme) -> np.ndarray:
    """Landmarks of the horizontally flipped image: ``x -> W - x`` and the scheme's point permutation."""
    out = np.asarray(points, dtype=np.float64).copy()
    out[..., 0] = width - out[..., 0]
    return out[..., list(scheme.flip), :]


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB, converting grey, palette, alpha (on black), CMYK and 16-bit images.

    Raises :class:`DataError` naming the file for missing, corrupt, truncated or degenerate images."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:
            im.load()
            img = _to_rgb8(im)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{p}: cannot decode image ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if min(img.size) < 2:
        raise DataError(f"{p}: image is {img.size[0]}x{img.size[1]} pixels, too small to hold a face")
    return img


def _to_rgb8(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if im.mode.startswith("I;16") or arr.max() > 255 else 255.0
        grey = np.clip(np.round(arr / hi * 255), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(base, rgba).convert("RGB")
    return im.convert("RGB")
