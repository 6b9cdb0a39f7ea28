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

from ..errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


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


def _flip_from_pairs(num_points: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(num_points))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _wflw98_flip() -> tuple[int, ...]:
    # WFLW layout (0-based): 0-32 contour (right-to-left mirror about 16), 33-41 first brow (33-37 upper arc from
    # the outer end, 38-41 lower arc back), 42-50 second brow (42-46 upper arc from the inner end, 47-50 lower arc),
    # 51-54 nose bridge and 55-59 nostrils (57 centre), 60-67 first eye (60 outer corner, clockwise), 68-75 second
    # eye (72 outer corner), 76-87 outer lip (76/82 corners, 79 and 85 on the midline), 88-95 inner lip (88/92
    # corners, 90 and 94 on the midline), 96/97 pupils. Same pairs as HRNet's MATCHED_PARTS["WFLW"] and mmpose's
    # wflw dataset_info "swap" entries.
    pairs = [(i, 32 - i) for i in range(16)]  # contour, 16 = chin
    pairs += [(33 + i, 46 - i) for i in range(5)]  # brows, upper arcs
    pairs += [(38 + i, 50 - i) for i in range(4)]  # brows, lower arcs
    pairs += [(55, 59), (56, 58)]  # nostrils
    pairs += [(60 + i, 72 - i) for i in range(5)]  # eyes: 60<->72 (outer corners) ... 64<->68 (inner corners)
    pairs += [(65, 75), (66, 74), (67, 73)]  # eyes, lower lids
    pairs += [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]  # outer lip
    pairs += [(88, 92), (89, 91), (93, 95)]  # inner lip
    pairs += [(96, 97)]  # pupils
    return _flip_from_pairs(98, pairs)


WFLW98 = LandmarkScheme(
    name="wflw98",
    num_points=98,
    flip=_wflw98_flip(),
    outer_eyes=(60, 72),  # the WFLW inter-ocular NME (Wu et al. 2018, LAB) uses the outer eye corners 60 and 72
    # inter_pupil uses the eye-contour means (like IBUG68); the annotated pupils 96/97 are in groups["pupils"].
    left_eye=tuple(range(60, 68)),
    right_eye=tuple(range(68, 76)),
    jaw=tuple(range(33)),
    groups={
        "contour": tuple(range(0, 33)),
        "brows": tuple(range(33, 51)),
        "nose": tuple(range(51, 60)),
        "eyes": tuple(range(60, 76)),
        "mouth": tuple(range(76, 96)),
        "pupils": (96, 97),
    },
)


def _aflw19_flip() -> tuple[int, ...]:
    # AFLW-19 (Zhu et al. CVPR 2016): the 21 AFLW points without the two ear lobes, 0-based: 0-2 first brow
    # (outer, centre, inner), 3-5 second brow (inner, centre, outer), 6-8 first eye (outer corner, centre, inner
    # corner), 9-11 second eye (inner corner, centre, outer corner), 12-14 nose (wing, tip, wing), 15-17 mouth
    # (corner, centre, corner), 18 chin. Same pairs as HRNet's MATCHED_PARTS["AFLW"] (1-based there).
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]
    return _flip_from_pairs(19, pairs)


AFLW19 = LandmarkScheme(
    name="aflw19",
    num_points=19,
    flip=_aflw19_flip(),
    outer_eyes=(6, 11),  # for completeness only: AFLW is evaluated with the box / diagonal normalisers
    left_eye=(6, 7, 8),
    right_eye=(9, 10, 11),
    jaw=(18,),
    groups={
        "brows": tuple(range(0, 6)),
        "eyes": tuple(range(6, 12)),
        "nose": (12, 13, 14),
        "mouth": (15, 16, 17),
        "chin": (18,),
    },
)

SCHEMES: dict[int, LandmarkScheme] = {68: IBUG68, 98: WFLW98, 19: AFLW19}


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
    """One image and its landmarks (in that image's pixel coordinates). Optional: per-point visibility ``(K,)``
    (AFLW), the dataset's face box ``(x0, y0, x1, y1)`` and named attribute flags (WFLW)."""

    image: Path
    points: np.ndarray
    visible: np.ndarray | None = None
    box: np.ndarray | None = None
    attributes: dict[str, int] | None = None

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


def mirror_points(points: np.ndarray, width: float, scheme: LandmarkScheme) -> np.ndarray:
    """Landmarks of the horizontally flipped image: ``x -> W - x`` and the scheme's point permutation."""
    out = np.asarray(points, dtype=np.float64).copy()
    out[..., 0] = width - out[..., 0]
    return out[..., list(scheme.flip), :]


def check_points_in_image(points: np.ndarray, size: tuple[int, int], where: str, slack: float = 0.5) -> None:
    """Refuse landmarks that lie far outside the image: more than ``slack`` x its size beyond an edge."""
    w, h = size
    lo, hi = points.min(0), points.max(0)
    if lo[0] < -slack * w or lo[1] < -slack * h or hi[0] > (1 + slack) * w or hi[1] > (1 + slack) * h:
        raise DataError(
            f"{where}: landmarks lie far outside the {w}x{h} image "
            f"(x {lo[0]:.0f}..{hi[0]:.0f}, y {lo[1]:.0f}..{hi[1]:.0f}); wrong file or wrong coordinates?"
        )


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB, converting grey, palette, alpha (on black), CMYK and 16-bit images.

    Raises :class:`DataError` naming the file for missing, corrupt, truncated or degenerate images."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: image file not found")
    try:
        with Image.open(p) as im:
            im.load()
            img = to_rgb8(im)
    except DataError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"{p}: cannot decode image ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    if min(img.size) < 2:
        raise DataError(f"{p}: image is {img.size[0]}x{img.size[1]} pixels, too small to hold a face")
    return img


def to_rgb8(im: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode: grey, palette, alpha (on black), CMYK, 16-bit and float images."""
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
