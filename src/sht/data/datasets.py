"""Readers for the paper's six landmark datasets in their official, unmodified download layouts.

Each ``load_*`` function takes the dataset root and returns a :class:`DatasetSplits`: the official splits as lists
of :class:`~sht.data.formats.LabeledImage` (landmarks converted to this package's convention: x right, y down,
pixels, the image spanning ``[0, W] x [0, H]``, pixel centres at ``i + 0.5``), the landmark scheme, the NME
normalisers the literature uses for the dataset (first = the headline one) and one line per problem found.

Loaders never decode images, they only check that the files exist. In the default (non-strict) mode a bad or
missing sample is skipped and described in ``problems``; ``strict=True`` raises :class:`DataError` on the first
problem. A missing root, an unreadable ``.mat`` or a dataset with no usable sample at all always raises.

Coordinate offsets (added to every native coordinate, boxes included; each loader takes ``offset=``):

* 300-W, Helen (300-W ``.pts``) and 300VW: 1-based pixel-centre coordinates (Matlab convention of the iBUG
  annotation tool): ``-0.5``. Pass ``offset=0.0`` for copies that were already converted, such as the ``.pts``
  files under ``shared/data``.
* AFLW-19 (``AFLWinfo_release.mat``): 1-based Matlab coordinates: ``-0.5``.
* WFLW: the authors do not state a convention and the reference implementations (HRNet, mmpose) use the values
  as they are; the values are continuous, not integer pixel indices. Default ``0.0``.
* CelebA (68 points from a detector such as OpenFace, supplied by the user): ``0.0``.

Validation without test data: besides the official splits every dataset has ``val`` and ``fit``. ``val`` is the
official validation split where there is one (CelebA); otherwise a fixed hold-out of about 5 %
(:data:`VAL_FRACTION`) of the official ``train`` split, drawn by identity so that no face of a held-out group
is trained on: one group per photo (Helen/AFW ``<photo id>_<face>`` names, WFLW and AFLW image files), per video
(300VW). Groups are ranked by the CRC-32 of their key, so the hold-out does not depend on file order or machine.
``fit`` is ``train`` without ``val``: train on ``fit``, choose checkpoints on ``val``, report on the test splits.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .formats import (
    AFLW19,
    IBUG68,
    WFLW98,
    DataError,
    LabeledImage,
    LandmarkScheme,
    read_pts,
    scan_pts_folder,
)

__all__ = [
    "DatasetSplits",
    "LOADERS",
    "VW300_CATEGORY1",
    "VW300_CATEGORY2",
    "VW300_CATEGORY3",
    "VW300_TRAIN",
    "WFLW_ATTRIBUTES",
    "check_dataset",
    "load_300vw",
    "load_300w",
    "load_aflw",
    "load_celeba",
    "load_dataset",
    "load_helen_sr",
    "load_wflw",
    "parse_wflw_line",
]

# WFLW attribute flags, in the order they follow the box on each annotation line.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
WFLW_FIELDS = 98 * 2 + 4 + len(WFLW_ATTRIBUTES) + 1  # 196 coordinates, box, 6 flags, image path = 207

# 300VW (Shen et al., ICCVW 2015): the official test categories; the 50 training videos are the other ones.
VW300_CATEGORY1 = (
    "114 124 125 126 150 158 401 402 505 506 507 508 509 510 511 514 515 518 519 520 521 522 524 525 537 538 540 "
    "541 546 547 548"
).split()  # 31 videos, laboratory and naturalistic well-lit conditions
VW300_CATEGORY2 = (
    "203 208 211 212 213 214 218 224 403 404 405 406 407 408 409 412 550 551 553"
).split()  # 19 videos, real-world human-computer interaction
VW300_CATEGORY3 = "410 411 516 517 526 528 529 530 531 533 557 558 559 562".split()  # 14 videos, arbitrary
VW300_TRAIN = (
    "001 002 003 004 007 009 010 011 013 015 016 017 018 019 020 022 025 027 028 029 031 033 034 035 037 039 041 "
    "043 044 046 047 048 049 053 057 059 112 113 115 119 120 123 138 143 144 160 204 205 223 225"
).split()  # 50 videos


@dataclass
class DatasetSplits:
    """A dataset read from its official layout: named splits of labeled images, the landmark scheme, the NME
    normalisers used for it in the literature (first = headline) and one line per problem found."""

    name: str
    scheme: LandmarkScheme
    splits: dict[str, list[LabeledImage]]
    norms: tuple[str, ...]
    problems: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of usable samples per split."""
        return {k: len(v) for k, v in self.splits.items()}


VAL_FRACTION = 0.05


def photo_key(sample: LabeledImage) -> str:
    """Identity group of a face: its photo (``<digits>_<n>`` names are faces of one photo, as in Helen/AFW),
    within its folder."""
    stem = sample.image.stem
    m = re.match(r"^(\d+)_\d+$", stem)
    return f"{sample.image.parent.name}/{m.group(1) if m else stem}"


def holdout(
    samples: list[LabeledImage], key: Callable[[LabeledImage], str], fraction: float = VAL_FRACTION
) -> set[int]:
    """Indices of the held-out samples: the ``fraction`` of identity groups (at least one) with the smallest
    CRC-32 of their key."""
    groups: dict[str, list[int]] = {}
    for i, smp in enumerate(samples):
        groups.setdefault(key(smp), []).append(i)
    if len(groups) < 2:
        return set()
    ranked = sorted(groups, key=lambda k: (zlib.crc32(k.encode()), k))
    n = min(len(groups) - 1, max(1, round(fraction * len(groups))))
    return {i for k in ranked[:n] for i in groups[k]}


class _Problems:
    """Collects problem lines, or raises on the first one in strict mode."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.lines: list[str] = []

    def __call__(self, message: str) -> None:
        if self.strict:
            raise DataError(message)
        self.lines.append(message)


def _root(root: str | Path, name: str, layout: str) -> Path:
    r = Path(root)
    if not r.is_dir():
        raise DataError(f"{r}: {name} dataset root not found (expected {layout})")
    return r


def _check_offset(offset: float) -> float:
    off = float(offset)
    if not np.isfinite(off):
        raise DataError(f"offset must be a finite number, got {offset!r}")
    return off


def _child(parent: Path, *names: str) -> Path | None:
    """The sub-folder of ``parent`` named like one of ``names`` (case-insensitive), if any."""
    if not parent.is_dir():
        return None
    wanted = [n.lower() for n in names]
    found = {c.name.lower(): c for c in sorted(parent.iterdir()) if c.is_dir()}
    for n in wanted:
        if n in found:
            return found[n]
    return None


def _first_file(*candidates: Path) -> Path | None:
    for c in candidates:
        if c.is_file():
            return c
    return None


def _finish(
    name: str,
    root: Path,
    scheme: LandmarkScheme,
    splits: dict[str, list[LabeledImage]],
    norms: tuple[str, ...],
    problems: _Problems,
    key: Callable[[LabeledImage], str] = photo_key,
) -> DatasetSplits:
    train = splits.get("train", [])
    if "val" in splits:
        splits["fit"] = list(train)
    else:
        held = holdout(train, key)
        splits["fit"] = [s for i, s in enumerate(train) if i not in held]
        splits["val"] = [s for i, s in enumerate(train) if i in held]
    if not any(splits.values()):
        lines = problems.lines
        shown = "; ".join(lines[:3]) + (f"; ... ({len(lines) - 3} more)" if len(lines) > 3 else "")
        raise DataError(f"{root}: no usable {name} samples" + (f"; problems: {shown}" if lines else ""))
    return DatasetSplits(name, scheme, splits, norms, problems.lines)


def _pts_folder(folder: Path, offset: float, problems: _Problems) -> list[LabeledImage]:
    """``image + .pts`` pairs (68 points) of one folder (:func:`scan_pts_folder`), ``offset`` added."""
    try:
        report = scan_pts_folder(folder, IBUG68.num_points, strict=problems.strict)
    except DataError as exc:
        problems(str(exc))
        return []
    for line in report.problems:
        problems(line)
    return [LabeledImage(smp.image, smp.points + offset) for smp in report.samples]


# --------------------------------------------------------------------------------------------------------------
# 300-W
# --------------------------------------------------------------------------------------------------------------

_300W_LAYOUT = "lfpw/{trainset,testset}, helen/{trainset,testset}, afw, ibug with images and 68-point .pts files"


def load_300w(root: str | Path, strict: bool = False, offset: float = -0.5) -> DatasetSplits:
    """300-W (Sagonas et al.) from the iBUG download: ``lfpw/{trainset,testset}``, ``helen/{trainset,testset}``,
    ``afw`` and ``ibug`` (folder names case-insensitive) holding images with 68-point ``.pts`` files.

    Splits: ``train`` = LFPW train + Helen train + AFW (3148), ``common`` = LFPW test + Helen test (554),
    ``challenging`` = iBUG (135), ``full`` = common + challenging (689). The native ``.pts`` coordinates are
    1-based pixel centres, hence ``offset=-0.5``.
    """
    r = _root(root, "300-W", _300W_LAYOUT)
    off = _check_offset(offset)
    problems = _Problems(strict)

    def subset(*parts: str) -> list[LabeledImage]:
        folder: Path | None = r
        for part in parts:
            folder = _child(folder, part) if folder is not None else None
        if folder is None:
            problems(f"{r / '/'.join(parts)}: 300-W folder missing (expected {_300W_LAYOUT})")
            return []
        return _pts_folder(folder, off, problems)

    lfpw_train, lfpw_test = subset("lfpw", "trainset"), subset("lfpw", "testset")
    helen_train, helen_test = subset("helen", "trainset"), subset("helen", "testset")
    afw, ibug = subset("afw"), subset("ibug")
    common = lfpw_test + helen_test
    splits = {
        "train": lfpw_train + helen_train + afw,
        "common": common,
        "challenging": ibug,
        "full": common + ibug,
    }
    return _finish("300w", r, IBUG68, splits, ("inter_ocular", "inter_pupil"), problems)


# --------------------------------------------------------------------------------------------------------------
# WFLW
# --------------------------------------------------------------------------------------------------------------

_WFLW_LISTS = Path("WFLW_annotations") / "list_98pt_rect_attr_train_test"
_WFLW_LAYOUT = f"{_WFLW_LISTS}/list_98pt_rect_attr_{{train,test}}.txt and WFLW_images/<event>/<image>.jpg"


def parse_wflw_line(line: str, where: str = "<wflw>") -> tuple[np.ndarray, np.ndarray, dict[str, int], str]:
    """Parse one WFLW annotation line: 98 ``x y`` pairs, the box ``x_min y_min x_max y_max``, six 0/1 flags
    (pose, expression, illumination, make-up, occlusion, blur) and the image path relative to ``WFLW_images``.

    Returns ``(points (98, 2), box (4,), attributes, path)`` in the file's own coordinates; any malformed line
    raises :class:`DataError` naming ``where``."""
    tokens = line.split()
    if len(tokens) != WFLW_FIELDS:
        raise DataError(
            f"{where}: expected {WFLW_FIELDS} fields (196 coordinates, 4 box values, 6 attribute flags, image "
            f"path), found {len(tokens)}"
        )
    values = []
    for tok in tokens[:200]:
        try:
            values.append(float(tok))
        except ValueError:
            raise DataError(f"{where}: non-numeric coordinate or box value {tok[:40]!r}") from None
    arr = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{where}: coordinates or box contain NaN or inf")
    box = arr[196:200]
    if box[2] < box[0] or box[3] < box[1]:
        raise DataError(f"{where}: box {box.tolist()} is not x_min y_min x_max y_max")
    attrs: dict[str, int] = {}
    for key, tok in zip(WFLW_ATTRIBUTES, tokens[200:206], strict=True):
        if tok not in ("0", "1"):
            raise DataError(f"{where}: attribute flag {key!r} must be 0 or 1, got {tok[:40]!r}")
        attrs[key] = int(tok)
    return arr[:196].reshape(98, 2), box, attrs, tokens[206]


def load_wflw(root: str | Path, strict: bool = False, offset: float = 0.0) -> DatasetSplits:
    """WFLW (Wu et al., CVPR 2018) from the official archives ``WFLW_images.tar.gz`` and
    ``WFLW_annotations.tar.gz`` unpacked side by side in ``root``.

    Splits: ``train`` (7500), ``test`` (2500) and the test subsets ``pose``, ``expression``, ``illumination``,
    ``makeup``, ``occlusion``, ``blur`` (flag == 1). Each sample carries its box and the six flags in
    ``attributes``. Headline NME: inter-ocular with the outer eye corners 60 and 72.
    """
    r = _root(root, "WFLW", _WFLW_LAYOUT)
    off = _check_offset(offset)
    images = r / "WFLW_images"
    if not images.is_dir():
        raise DataError(f"{images}: WFLW image folder not found (expected {_WFLW_LAYOUT})")
    problems = _Problems(strict)
    splits: dict[str, list[LabeledImage]] = {}
    for split in ("train", "test"):
        ann = r / _WFLW_LISTS / f"list_98pt_rect_attr_{split}.txt"
        splits[split] = []
        if not ann.is_file():
            problems(f"{ann}: WFLW annotation file missing")
            continue
        try:
            text = ann.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems(f"{ann}: cannot read ({exc.__class__.__name__})")
            continue
        lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
        if not lines:
            problems(f"{ann}: no annotation lines")
        for lineno, ln in lines:
            where = f"{ann}:{lineno}"
            try:
                pts, box, attrs, rel = parse_wflw_line(ln, where)
            except DataError as exc:
                problems(str(exc))
                continue
            img = images / rel
            if not img.is_file():
                problems(f"{where}: image {img} not found")
                continue
            splits[split].append(LabeledImage(img, pts + off, box=box + off, attributes=attrs))
    for key in WFLW_ATTRIBUTES:
        splits[key] = [s for s in splits["test"] if s.attributes is not None and s.attributes[key] == 1]
    return _finish("wflw", r, WFLW98, splits, ("inter_ocular",), problems, key=lambda s: str(s.image))


# --------------------------------------------------------------------------------------------------------------
# AFLW-19
# --------------------------------------------------------------------------------------------------------------

_AFLW_LAYOUT = "AFLWinfo_release.mat and the AFLW images under flickr/ (or data/flickr/)"


def _mat_string(x: Any) -> str | None:
    """A Python string from a Matlab string / cell element as scipy.io.loadmat returns it."""
    for _ in range(6):
        if isinstance(x, str):
            return x
        if isinstance(x, bytes):
            return x.decode("utf-8", "replace")
        a = np.asarray(x)
        if a.size != 1:
            return None
        x = a.reshape(-1)[0]
    return None


def _mat_field(mat: dict[str, Any], key: str, path: Path, shape: tuple[int | None, ...]) -> np.ndarray:
    if key not in mat:
        fields = ", ".join(sorted(k for k in mat if not k.startswith("__")))
        raise DataError(f"{path}: field {key!r} missing (found: {fields or 'none'})")
    try:
        a = np.asarray(mat[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: field {key!r} is not numeric") from None
    if a.ndim != len(shape) or any(want is not None and got != want for got, want in zip(a.shape, shape, strict=True)):
        want = " x ".join("N" if s is None else str(s) for s in shape)
        raise DataError(f"{path}: field {key!r} has shape {a.shape}, expected {want}")
    return a


def load_aflw(root: str | Path, strict: bool = False, offset: float = -0.5, train_count: int = 20000) -> DatasetSplits:
    """AFLW-19 with the protocol of Zhu et al. (CVPR 2016, "cascaded compositional learning"), read from their
    ``AFLWinfo_release.mat``: ``bbox`` (N x 4: left, right, top, bottom), ``data`` (N x 38: x1..x19 then
    y1..y19, 1-based), ``mask_new`` (N x 19 visibility), ``ra`` (a 1-based random permutation of 1..N) and
    ``nameList`` (N image paths relative to the AFLW ``flickr`` folder).

    Splits: ``train`` = faces ``ra[:20000]``, ``full`` = the remaining 4386 test faces, ``frontal`` = the test
    faces whose 19 points are all visible (1314). ``LabeledImage.box`` is the dataset box ``(x0, y0, x1, y1)``
    (the ``box`` normaliser is ``sqrt(w * h)`` of it) and ``visible`` the boolean mask; ``attributes["face"]``
    is the face's row in the ``.mat`` file.
    """
    r = _root(root, "AFLW", _AFLW_LAYOUT)
    off = _check_offset(offset)
    path = r / "AFLWinfo_release.mat"
    if not path.is_file():
        raise DataError(f"{path}: AFLW-19 annotation file not found (expected {_AFLW_LAYOUT})")
    try:
        import scipy.io

        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises ValueError, MatReadError, OSError, TypeError... on bad files
        raise DataError(f"{path}: cannot read the .mat file ({exc.__class__.__name__}: {str(exc)[:80]})") from None
    bbox = _mat_field(mat, "bbox", path, (None, 4))
    n = bbox.shape[0]
    data = _mat_field(mat, "data", path, (n, 38))
    mask = _mat_field(mat, "mask_new", path, (n, 19))
    if "nameList" not in mat:
        raise DataError(f"{path}: field 'nameList' missing")
    names_arr = np.asarray(mat["nameList"])
    if names_arr.size != n:
        raise DataError(f"{path}: nameList has {names_arr.size} entries but bbox has {n} rows")
    names = [_mat_string(e) for e in names_arr.reshape(-1)]
    if "ra" not in mat:
        raise DataError(f"{path}: field 'ra' (the train/test permutation) missing")
    try:
        ra_f = np.asarray(mat["ra"], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: field 'ra' is not numeric") from None
    if ra_f.size != n or not np.array_equal(np.sort(ra_f), np.arange(1, n + 1)):
        raise DataError(f"{path}: field 'ra' is not a permutation of 1..{n} (1-based face indices)")
    if not 0 < train_count < n:
        raise DataError(f"{path}: {n} faces, too few for train_count={train_count} training faces plus a test set")
    ra = ra_f.astype(np.int64) - 1

    problems = _Problems(strict)
    samples: dict[int, LabeledImage] = {}
    all_visible = np.zeros(n, dtype=bool)
    for i in range(n):
        where = f"{path} face {i}"
        name = names[i]
        if not name:
            problems(f"{where}: nameList entry is not a file name")
            continue
        rel = name.strip().replace("\\", "/")
        img = _first_file(r / "flickr" / rel, r / "data" / "flickr" / rel, r / rel)
        if img is None:
            problems(f"{where}: image {r / 'flickr' / rel} not found")
            continue
        pts = np.stack([data[i, :19], data[i, 19:]], axis=1)
        if not np.all(np.isfinite(pts)):
            problems(f"{where}: coordinates contain NaN or inf")
            continue
        m = mask[i]
        if not np.all((m == 0) | (m == 1)):
            problems(f"{where}: mask_new values must be 0 or 1")
            continue
        vis = m.astype(bool)
        if not vis.any():
            problems(f"{where}: no visible landmark")
            continue
        left, right, top, bottom = bbox[i]
        box = np.array([left, top, right, bottom], dtype=np.float64)
        if not np.all(np.isfinite(box)) or right <= left or bottom <= top:
            problems(f"{where}: bad bbox {bbox[i].tolist()} (expected left < right, top < bottom)")
            continue
        all_visible[i] = vis.all()
        samples[i] = LabeledImage(img, pts + off, visible=vis, box=box + off, attributes={"face": i})
    train = [samples[i] for i in ra[:train_count] if i in samples]
    test_idx = [int(i) for i in ra[train_count:] if i in samples]
    splits = {
        "train": train,
        "full": [samples[i] for i in test_idx],
        "frontal": [samples[i] for i in test_idx if all_visible[i]],
    }
    return _finish("aflw", r, AFLW19, splits, ("box", "diagonal"), problems, key=lambda s: str(s.image))


# --------------------------------------------------------------------------------------------------------------
# CelebA
# --------------------------------------------------------------------------------------------------------------

_CELEBA_LAYOUT = (
    "img_align_celeba/*.jpg and list_eval_partition.txt (or the Google-Drive layout Img/img_align_celeba and "
    "Eval/list_eval_partition.txt)"
)
_CELEBA_SPLITS = {"0": "train", "1": "val", "2": "test"}


def _landmark_table(path: Path, problems: _Problems) -> dict[str, np.ndarray]:
    """``filename x0 y0 ... x67 y67`` lines (commas or spaces; an optional header line) keyed by file stem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__})") from None
    out: dict[str, np.ndarray] = {}
    first = True
    want = 1 + 2 * IBUG68.num_points
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens = line.replace(",", " ").split()
        if not tokens:
            continue
        where = f"{path}:{lineno}"
        if first:
            first = False
            try:
                float(tokens[1] if len(tokens) > 1 else "x")
            except ValueError:
                continue  # a header line such as "image,x0,y0,..."
        if len(tokens) != want:
            problems(f"{where}: expected {want} fields (file name and 68 x y pairs), found {len(tokens)}")
            continue
        try:
            pts = np.asarray([float(t) for t in tokens[1:]], dtype=np.float64).reshape(-1, 2)
        except ValueError:
            problems(f"{where}: non-numeric coordinate")
            continue
        if not np.all(np.isfinite(pts)):
            problems(f"{where}: coordinates contain NaN or inf")
            continue
        stem = Path(tokens[0]).stem
        if stem in out:
            problems(f"{where}: {tokens[0]} listed twice (the first entry is used)")
            continue
        out[stem] = pts
    return out


def _landmark_folder(folder: Path, problems: _Problems) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for p in sorted(folder.glob("*.pts")):
        try:
            out[p.stem] = read_pts(p, IBUG68.num_points)
        except DataError as exc:
            problems(str(exc))
    return out


def load_celeba(
    root: str | Path, strict: bool = False, landmarks: str | Path | None = None, offset: float = 0.0
) -> DatasetSplits:
    """CelebA (Liu et al., ICCV 2015) aligned images with 68-point landmarks supplied by the user (CelebA itself
    only has 5 points; the paper uses OpenFace detections as ground truth).

    Layout: ``img_align_celeba/*.jpg`` and ``list_eval_partition.txt`` (``000001.jpg 0``; 0 train, 1 val,
    2 test) in ``root`` (``Img/img_align_celeba`` and ``Eval/list_eval_partition.txt`` are accepted too).
    Landmarks (in the pixels of the aligned 178x218 images): ``landmarks=`` a folder of ``<image stem>.pts`` or a
    CSV/TXT file; by default ``root/landmarks68/`` or ``root/landmarks68.csv`` / ``root/landmarks68.txt`` with
    lines ``filename x0 y0 ... x67 y67`` (commas or spaces). Images without landmarks are left out (one summary
    problem line). Splits ``train``/``val``/``test`` follow the official partition (162770 / 19867 / 19962).
    """
    r = _root(root, "CelebA", _CELEBA_LAYOUT)
    off = _check_offset(offset)
    part = _first_file(r / "list_eval_partition.txt", r / "Eval" / "list_eval_partition.txt")
    if part is None:
        raise DataError(f"{r / 'list_eval_partition.txt'}: CelebA partition file not found")
    img_dir = next((d for d in (r / "img_align_celeba", r / "Img" / "img_align_celeba") if d.is_dir()), None)
    if img_dir is None:
        raise DataError(f"{r / 'img_align_celeba'}: CelebA image folder not found")
    problems = _Problems(strict)

    if landmarks is not None:
        src = Path(landmarks)
        if not src.exists():
            raise DataError(f"{src}: CelebA landmark file or folder not found")
    else:
        src = next(
            (p for p in (r / "landmarks68", r / "landmarks68.csv", r / "landmarks68.txt") if p.exists()), r / "none"
        )
        if not src.exists():
            raise DataError(
                f"{r}: no 68-point CelebA landmarks: expected a folder landmarks68/ of <image>.pts files or "
                "landmarks68.csv / landmarks68.txt with lines 'filename x0 y0 ... x67 y67' (or pass landmarks=)"
            )
    table = _landmark_folder(src, problems) if src.is_dir() else _landmark_table(src, problems)
    if not table:
        problems(f"{src}: no usable 68-point landmarks")

    try:
        part_text = part.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{part}: cannot read ({exc.__class__.__name__})") from None
    listed: dict[str, tuple[str, str]] = {}  # stem -> (file name, split)
    for lineno, line in enumerate(part_text.splitlines(), 1):
        tokens = line.replace(",", " ").split()
        if not tokens or (not listed and tokens == ["image_id", "partition"]):  # CSV copies have a header
            continue
        where = f"{part}:{lineno}"
        if len(tokens) != 2 or tokens[1] not in _CELEBA_SPLITS:
            problems(f"{where}: expected '<image> <0|1|2>', got {line.strip()[:60]!r}")
            continue
        stem = Path(tokens[0]).stem
        if stem in listed:
            problems(f"{where}: {tokens[0]} listed twice")
            continue
        listed[stem] = (tokens[0], _CELEBA_SPLITS[tokens[1]])
    if not listed:
        raise DataError(f"{part}: no usable lines")

    splits: dict[str, list[LabeledImage]] = {"train": [], "val": [], "test": []}
    for stem in sorted(set(table) - set(listed)):
        problems(f"{src}: landmarks for {stem} but the image is not in {part.name}")
    unlabeled = []
    for stem in sorted(listed):
        fname, split = listed[stem]
        if stem not in table:
            unlabeled.append(fname)
            continue
        img = img_dir / fname
        if not img.is_file():
            problems(f"{img}: image not found")
            continue
        splits[split].append(LabeledImage(img, table[stem] + off))
    if unlabeled and table:
        problems(
            f"{src}: {len(unlabeled)} of {len(listed)} images in {part.name} have no 68-point landmarks and are "
            f"left out (first: {', '.join(unlabeled[:3])})"
        )
    return _finish("celeba", r, IBUG68, splits, ("face_width",), problems)


# --------------------------------------------------------------------------------------------------------------
# Helen (face hallucination split)
# --------------------------------------------------------------------------------------------------------------


def load_helen_sr(root: str | Path, strict: bool = False, test_count: int = 50, offset: float = -0.5) -> DatasetSplits:
    """Helen with 68-point 300-W annotations, split as in the face-hallucination literature (FSRNet, DIC, the
    paper: 2005 train / 50 test): all images sorted by file name, the last ``test_count`` are ``test`` and the
    rest ``train``.

    ``root`` is a 300-W style tree (``helen/{trainset,testset}`` or ``{trainset,testset}``, names
    case-insensitive) or one flat folder of images with ``.pts`` files. ``offset=-0.5`` converts the native
    1-based 300-W ``.pts``; pass ``offset=0.0`` for already converted copies.

    The public 300-W Helen set has 2000 + 330 = 2330 images, so this gives 2280 / 50; FSRNet and DIC report 2005
    training images because they dropped images during their own preprocessing (their exact lists are not
    public), so the training set here is a superset of theirs.
    """
    r = _root(root, "Helen", "helen/{trainset,testset} or a folder of images with 68-point .pts files")
    off = _check_offset(offset)
    if test_count < 1:
        raise DataError(f"test_count must be at least 1, got {test_count}")
    problems = _Problems(strict)
    base = _child(r, "helen") or r
    folders = [f for f in (_child(base, "trainset"), _child(base, "testset")) if f is not None] or [base]
    samples: list[LabeledImage] = []
    for folder in folders:
        samples += _pts_folder(folder, off, problems)
    seen: dict[str, Path] = {}
    unique: list[LabeledImage] = []
    for s in samples:
        if s.image.name in seen:
            problems(f"{s.image}: same file name as {seen[s.image.name]} (the first is used)")
            continue
        seen[s.image.name] = s.image
        unique.append(s)
    unique.sort(key=lambda s: s.image.name)
    if unique and len(unique) <= test_count:
        raise DataError(f"{r}: only {len(unique)} usable Helen images, need more than test_count={test_count}")
    splits = {"train": unique[:-test_count], "test": unique[-test_count:]} if unique else {"train": [], "test": []}
    return _finish("helen", r, IBUG68, splits, ("face_width",), problems)


# --------------------------------------------------------------------------------------------------------------
# 300VW
# --------------------------------------------------------------------------------------------------------------

_VW_LAYOUT = "300VW_Dataset_2015_12_14/<video id>/annot/*.pts with frames in <video id>/frames/ (or imgs/)"
_VW_SPLITS = (
    {v: "train" for v in VW300_TRAIN}
    | {v: "category1" for v in VW300_CATEGORY1}
    | {v: "category2" for v in VW300_CATEGORY2}
    | {v: "category3" for v in VW300_CATEGORY3}
)


def load_300vw(root: str | Path, strict: bool = False, offset: float = -0.5) -> DatasetSplits:
    """300VW (Shen et al., ICCVW 2015): ``300VW_Dataset_2015_12_14/<id>/{vid.avi, annot/000001.pts, ...}``
    (``root`` may be that folder or its parent). One sample per annotated frame; frames must be extracted first
    to ``<id>/frames/000001.png`` (or ``.jpg``; mmpose's ``imgs/`` folder is accepted too), the first frame of
    the video being ``000001`` like the annotations. Videos are never decoded here.

    Splits: ``train`` (the 50 training videos), ``category1`` (31 videos), ``category2`` (19), ``category3``
    (14). ``attributes`` holds ``{"video": id, "frame": number}``.
    """
    r = _root(root, "300VW", _VW_LAYOUT)
    off = _check_offset(offset)
    base = r / "300VW_Dataset_2015_12_14" if (r / "300VW_Dataset_2015_12_14").is_dir() else r
    videos = sorted(d for d in base.iterdir() if d.is_dir() and d.name.isdigit())
    if not videos:
        raise DataError(f"{base}: no 300VW video folders (expected {_VW_LAYOUT})")
    problems = _Problems(strict)
    splits: dict[str, list[LabeledImage]] = {"train": [], "category1": [], "category2": [], "category3": []}
    for d in videos:
        split = _VW_SPLITS.get(d.name)
        if split is None:
            problems(f"{d}: video {d.name} is in neither the official 300VW training list nor a test category")
            continue
        annot = d / "annot"
        pts_files = sorted(annot.glob("*.pts")) if annot.is_dir() else []
        if not pts_files:
            problems(f"{annot}: no .pts annotations")
            continue
        frames = _child(d, "frames", "imgs")
        if frames is None:
            if (d / "vid.avi").is_file():
                problems(
                    f"{d}: frames not extracted (only vid.avi); extract them with: mkdir -p {d / 'frames'} && "
                    f"ffmpeg -i {d / 'vid.avi'} -start_number 1 {d / 'frames' / '%06d.png'}"
                )
            else:
                problems(f"{d}: neither a frames/ folder nor vid.avi")
            continue
        present = {f.name for f in frames.iterdir()}
        for p in pts_files:
            try:
                frame = int(p.stem)
            except ValueError:
                problems(f"{p}: annotation file name is not a frame number")
                continue
            name = next((p.stem + s for s in (".png", ".jpg", ".jpeg") if p.stem + s in present), None)
            if name is None:
                problems(f"{p}: frame image {frames / (p.stem + '.png')} (or .jpg) not found")
                continue
            try:
                pts = read_pts(p, IBUG68.num_points)
            except DataError as exc:
                problems(str(exc))
                continue
            splits[split].append(
                LabeledImage(frames / name, pts + off, attributes={"video": int(d.name), "frame": frame})
            )
    return _finish("300vw", r, IBUG68, splits, ("inter_ocular",), problems, key=_video_key)


def _video_key(sample: LabeledImage) -> str:
    return str((sample.attributes or {}).get("video", sample.image.parent.parent.name))


# --------------------------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., DatasetSplits]] = {
    "300w": load_300w,
    "wflw": load_wflw,
    "aflw": load_aflw,
    "celeba": load_celeba,
    "helen": load_helen_sr,
    "300vw": load_300vw,
}


def load_dataset(name: str, root: str | Path, strict: bool = False, **options: Any) -> DatasetSplits:
    """Read dataset ``name`` (one of :data:`LOADERS`) from ``root``; ``options`` go to its loader (``offset``,
    ``landmarks`` for CelebA, ``test_count`` for Helen, ``train_count`` for AFLW)."""
    try:
        loader = LOADERS[name.lower()]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(LOADERS)}") from None
    return loader(root, strict=strict, **options)


def check_dataset(name: str, root: str | Path, **options: Any) -> str:
    """A human-readable report: sample counts per split and every problem found, one per line."""
    ds = load_dataset(name, root, strict=False, **options)
    width = max(len(k) for k in ds.splits)
    lines = [
        f"{ds.name} at {Path(root)}: {ds.scheme.num_points}-point scheme {ds.scheme.name}, "
        f"NME normalisers {', '.join(ds.norms)}"
    ]
    lines += [f"  {k:<{width}}  {v}" for k, v in ds.counts().items()]
    lines.append(
        "  (val: "
        + (
            "the official validation split"
            if name.lower() == "celeba"
            else f"~{VAL_FRACTION:.0%} of train held out by identity, fixed"
        )
        + "; fit: train without val;"
        " train on fit, choose checkpoints on val)"
    )
    if ds.problems:
        lines.append(f"{len(ds.problems)} problem(s), skipped:")
        lines += [f"  {p}" for p in ds.problems]
    else:
        lines.append("no problems found")
    return "\n".join(lines)


def parse_source(source: str, strict: bool = False) -> tuple[str, str, str, DatasetSplits]:
    """Read a ``NAME:ROOT:SPLIT[;key=value...]`` data source: the options go to the loader (``offset``,
    ``train_count``, ``test_count``, ``landmarks``). Returns (name, root, split, the loaded dataset)."""
    import yaml

    spec, *opts = source.split(";")
    try:
        name, rest = spec.split(":", 1)
        root, split = rest.rsplit(":", 1)
    except ValueError:
        raise DataError(f"bad dataset source {source!r}; use NAME:ROOT:SPLIT, e.g. wflw:/data/WFLW:test") from None
    options: dict[str, Any] = {}
    for o in opts:
        if "=" not in o:
            raise DataError(f"bad option {o!r} in {source!r}; use key=value")
        k, v = o.split("=", 1)
        options[k.strip()] = yaml.safe_load(v)
    try:
        ds = load_dataset(name, root, strict=strict, **options)
    except TypeError:
        raise DataError(f"{name} takes no option among {', '.join(options)} (source {source!r})") from None
    if split not in ds.splits:
        raise DataError(f"{name} at {root} has no split {split!r}; splits: {', '.join(ds.splits)}")
    return name, root, split, ds
