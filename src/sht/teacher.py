"""Teacher landmarks for unlabeled faces: the paper's CelebA protocol (its 68 points came from OpenFace) for any
folder of face images, with dlib's HOG face detector and 68-point shape predictor as the teacher.

The teacher is the optional ``dlib`` extra: ``pip install 'sht[dlib]'`` (dlib-bin and face-recognition-models,
whose ``shape_predictor_68_face_landmarks.dat`` is located by path, never through ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .data.formats import IMAGE_SUFFIXES, DataError, load_image, write_pts

DLIB_MODEL = "shape_predictor_68_face_landmarks.dat"


def dlib_model_path() -> Path:
    """The 68-point model file inside the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the dlib teacher needs face-recognition-models: pip install 'sht[dlib]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / DLIB_MODEL
    if not path.is_file():
        raise DataError(f"{path}: the 68-point dlib model is missing from face-recognition-models")
    return path


class DlibTeacher:
    """dlib's frontal face detector + 68-point shape predictor; points in the project's pixel convention."""

    name = "dlib"

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise DataError("the dlib teacher needs dlib: pip install 'sht[dlib]'") from None
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(dlib_model_path()))
        self.upsample = upsample

    def rect(self, x0: float, y0: float, x1: float, y1: float):  # noqa: ANN201 - a dlib.rectangle
        """The dlib rectangle of the box ``[x0, x1] x [y0, y1]`` (dlib's corners are inclusive pixel indices)."""
        return self.dlib.rectangle(round(x0), round(y0), round(x1) - 1, round(y1) - 1)

    def points_in(self, arr: np.ndarray, rect) -> np.ndarray:  # noqa: ANN001 - a dlib.rectangle
        """The shape predictor's 68 landmarks ``(68, 2)`` of the face in ``rect`` of the RGB array ``arr``."""
        shape = self.predictor(arr, rect)
        # dlib reports integer pixel indices; their centres are at index + 0.5 in this project's convention
        return np.array([[p.x + 0.5, p.y + 0.5] for p in shape.parts()], dtype=np.float64)

    def __call__(self, img: Image.Image) -> np.ndarray | None:
        """68 landmarks ``(68, 2)`` of the largest face, or None when no face is found."""
        arr = np.ascontiguousarray(np.asarray(img.convert("RGB")))
        faces = self.detector(arr, self.upsample)
        if len(faces) == 0:
            return None
        return self.points_in(arr, max(faces, key=lambda r: r.width() * r.height()))


@dataclass
class LabelReport:
    """What labeling a folder did: one entry per image, nothing unaccounted for."""

    total: int
    labeled: list[Path] = field(default_factory=list)
    not_found: list[Path] = field(default_factory=list)
    existing: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.total} images: {len(self.labeled)} labeled, {len(self.not_found)} without a detected face, "
            f"{len(self.existing)} already labeled (kept), {len(self.errors)} unreadable",
        ]
        lines += [f"  no face: {p}" for p in self.not_found]
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)


def label_folder(
    folder: str | Path,
    teacher: str = "dlib",
    out: str | Path | None = None,
    overwrite: bool = False,
    limit: int = 0,
    progress: bool = True,
) -> LabelReport:
    """Write a ``.pts`` beside each image of ``folder`` (or into ``out``, with a link to the image, when the
    folder is read-only), and ``label_report.txt`` listing every face that was not found."""
    src = Path(folder)
    if not src.is_dir():
        raise DataError(f"{src}: not a folder")
    images = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit:
        images = images[:limit]
    if not images:
        raise DataError(f"{src}: no images ({'/'.join(IMAGE_SUFFIXES)})")
    if teacher != "dlib":
        raise DataError(f"unknown teacher {teacher!r}; available: dlib")
    dst = Path(out) if out else src
    dst.mkdir(parents=True, exist_ok=True)
    if not os.access(dst, os.W_OK):
        raise DataError(f"{dst}: not writable; pass --out DIR to write the labels elsewhere")
    model = DlibTeacher()
    report = LabelReport(total=len(images))
    for img_path in tqdm(images, desc=f"labeling {src.name}", disable=not progress):
        pts_path = dst / (img_path.stem + ".pts")
        if pts_path.exists() and not overwrite:
            report.existing.append(img_path)
            continue
        try:
            pts = model(load_image(img_path))
        except DataError as exc:
            report.errors.append(str(exc))
            continue
        if pts is None:
            report.not_found.append(img_path)
            continue
        write_pts(pts_path, pts)
        if dst != src:
            link = dst / img_path.name
            if not link.exists():
                link.symlink_to(img_path.resolve())
        report.labeled.append(img_path)
    (dst / "label_report.txt").write_text(report.summary() + "\n")
    return report
