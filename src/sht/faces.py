"""Finding faces in photos and video frames and turning them into canonical crops.

Face detectors: OpenCV's Haar cascade (the default), dlib's HOG detector and sht's own (:class:`ShtFaceDetector`,
trained by ``sht train-detector``; its boxes are the 68-point landmark box itself). A face detector gives a box; a
fixed calibration maps it to the canonical crop (square, centred on the 68-point box, side 1.3 x its larger side);
optionally the crop is refined with a landmark model: predict the landmarks in
the current crop, recompute the canonical box from them, repeat. The landmark model is handed in as a callable
(``LandmarkFn``: crops -> landmarks), so this module knows nothing of inference or training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .data.transforms import CropBox, canonical_box, crop_image

LandmarkFn = Callable[[list[Image.Image]], list[np.ndarray]]
"""A landmark model as a function: canonical face crops -> ``(K, 2)`` landmarks in each crop's pixels."""


@dataclass(frozen=True)
class FaceBox:
    """A detector's face box in image pixels and its score (larger is more confident)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0


@dataclass(frozen=True)
class BoxCalibration:
    """Canonical crop from a detector box: centre = box centre + (dx * w, dy * h), side = scale * w (or scale x
    the larger of w and h with ``larger_side``)."""

    dx: float
    dy: float
    scale: float
    larger_side: bool = False

    def to_crop(self, box: FaceBox) -> CropBox:
        cx = (box.x0 + box.x1) / 2 + self.dx * box.width
        cy = (box.y0 + box.y1) / 2 + self.dy * box.height
        side = self.scale * (max(box.width, box.height) if self.larger_side else box.width)
        return CropBox(cx - side / 2, cy - side / 2, side)


# Medians over 300-W Helen training faces of (canonical centre - box centre) / box size and canonical side / box
# width: Haar on 277 faces (inter-quartile ranges 0.09, 0.05, 0.11), dlib's HOG detector (1x upsampled) on 289
# (0.11, 0.11, 0.24). Refinement with the landmark model removes most of the remaining error.
HAAR_CALIBRATION = BoxCalibration(0.0, 0.142, 1.127)
DLIB_CALIBRATION = BoxCalibration(0.026, 0.077, 1.193)
# sht's detector predicts the 68-point landmark box, so the canonical crop follows from its definition exactly:
# centre = box centre, side = 1.3 x the box's larger side (sht.data.transforms.canonical_box).
LANDMARK_BOX_CALIBRATION = BoxCalibration(0.0, 0.0, 1.3, larger_side=True)
FACE_DETECTOR_WEIGHTS = Path(__file__).resolve().parent / "weights" / "face-detector.safetensors"


class HaarFaceDetector:
    """OpenCV's bundled frontal-face Haar cascade: offline, no weights to download."""

    name = "haar"
    calibration = HAAR_CALIBRATION

    def __init__(self, scale_factor: float = 1.1, min_neighbors: int = 4, min_size: int = 20) -> None:
        try:
            import cv2
        except ImportError as exc:  # pragma: no cover - opencv is a core dependency
            raise RuntimeError("the Haar face detector needs opencv-python-headless (pip install sht)") from exc
        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError("this OpenCV build has no Haar cascades (OpenCV 5 removed them); install opencv<5")
        self._cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if self._cascade.empty():
            raise RuntimeError("OpenCV's haarcascade_frontalface_default.xml could not be loaded")
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def __call__(self, img: Image.Image) -> list[FaceBox]:
        """Face boxes, largest first."""
        grey = np.asarray(img.convert("L"))
        found, _, weights = self._cascade.detectMultiScale3(
            grey,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        boxes = [
            FaceBox(float(x), float(y), float(x + w), float(y + h), float(s))
            for (x, y, w, h), s in zip(found, np.ravel(weights), strict=False)
        ]
        return sorted(boxes, key=lambda b: -b.width * b.height)


class DlibFaceDetector:
    """dlib's HOG frontal face detector (the ``dlib`` extra); upsamples once to find small faces."""

    name = "dlib"
    calibration = DLIB_CALIBRATION

    def __init__(self, upsample: int = 1) -> None:
        try:
            import dlib
        except ImportError:
            raise RuntimeError("the dlib face detector needs the dlib extra: pip install 'sht[dlib]'") from None
        self._detector = dlib.get_frontal_face_detector()
        self.upsample = upsample

    def __call__(self, img: Image.Image) -> list[FaceBox]:
        """Face boxes, largest first."""
        arr = np.ascontiguousarray(np.asarray(img.convert("RGB")))
        rects, scores, _ = self._detector.run(arr, self.upsample, 0.0)
        boxes = [
            FaceBox(float(r.left()), float(r.top()), float(r.right() + 1), float(r.bottom() + 1), float(sc))
            for r, sc in zip(rects, scores, strict=True)
        ]
        return sorted(boxes, key=lambda b: -b.width * b.height)


class ShtFaceDetector:
    """sht's own face detector (:mod:`sht.models.face_detector`): faces from about 12 px up, in photos of any
    size (an image pyramid for large faces, tiles for large photos; photos above ``max_pixels`` are reduced
    first). Boxes are the 68-point landmark box, with the detector's score (``threshold``: the lowest kept;
    default: the model's). ``weights``: a ``sht train-detector`` checkpoint or export (default: the shipped
    weights, ``sht/weights/face-detector.safetensors``); ``border``, ``upsample``, ``upsample_threshold``:
    :class:`DetectSettings`'s (default its)."""

    name = "sht"
    calibration = LANDMARK_BOX_CALIBRATION

    def __init__(
        self,
        weights: str | Path | None = None,
        threshold: float | None = None,
        device: str = "cpu",
        max_pixels: int = 16_000_000,
        tile: int = 1024,
        border: int | None = None,
        upsample: float | None = None,
        upsample_threshold: float | None = None,
    ) -> None:
        import torch

        from .checkpoint import CheckpointError, load_module, read_checkpoint
        from .config import ConfigError, build_detector_config
        from .models.face_detector import DetectSettings, FaceDetector, fold_batchnorm

        path = Path(weights) if weights is not None else FACE_DETECTOR_WEIGHTS
        if weights is None and not path.is_file():
            raise CheckpointError(
                f"no face-detector weights in this installation ({path} is missing): train them with "
                "sht train-detector, pass a weights file, or use the haar or dlib face detector"
            )
        tensors, doc = read_checkpoint(path)
        try:
            cfg = build_detector_config(doc.get("config") or {}).model
        except ConfigError as exc:
            raise CheckpointError(f"{path}: not a face-detector checkpoint of this sht version ({exc})") from None
        model = FaceDetector(cfg)
        load_module(model, tensors, "detector", str(path))
        # inference only: BatchNorm folded into the convolutions and channels-last memory (faster on a CPU, the
        # same boxes up to float rounding; speed in benchmarks/RESULTS.md, "Face detection")
        self.model = fold_batchnorm(model.float()).to(device, memory_format=torch.channels_last)
        self.device = torch.device(device)
        self.source = str(path)
        self.settings = DetectSettings(
            threshold if threshold is not None else cfg.threshold,
            cfg.nms_iou,
            tile=tile,
            max_pixels=max_pixels,
            upsample=cfg.upsample,
            upsample_threshold=cfg.upsample_threshold,
            upsample_below=cfg.upsample_below,
        )
        if border is not None:
            self.settings.border = border
        if upsample is not None:
            self.settings.upsample = upsample
        if upsample_threshold is not None:
            self.settings.upsample_threshold = upsample_threshold

    def __call__(self, img: Image.Image) -> list[FaceBox]:
        """Face boxes (the landmark box) with scores, largest first; an empty list for an empty image."""
        from .models.face_detector import detect

        found = self._run(img, lambda t: (detect(self.model, t, self.settings),))
        if found is None:
            return []
        boxes = [FaceBox(*map(float, b)) for b in found[0]]
        return sorted(boxes, key=lambda b: -b.width * b.height)

    def levels(self, img: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """The pyramid's and the enlarged level's boxes ``(N, 5)`` in the photo's pixels, before their merge
        (:func:`sht.models.face_detector.detect_levels`): what a benchmark reads several thresholds from."""
        from .models.face_detector import detect_levels

        found = self._run(img, lambda t: detect_levels(self.model, t, self.settings))
        return (np.zeros((0, 5)), np.zeros((0, 5))) if found is None else found  # type: ignore[return-value]

    def _run(self, img: Image.Image, fn) -> tuple[np.ndarray, ...] | None:  # noqa: ANN001 - tensor -> boxes
        """``fn`` on the photo as a float tensor (reduced to ``max_pixels``), its boxes in the photo's pixels."""
        import torch

        from .data.formats import to_rgb8

        rgb = to_rgb8(img)
        w, h = rgb.size
        if w < 1 or h < 1:
            return None
        scale = min(1.0, (self.settings.max_pixels / (w * h)) ** 0.5)
        if scale < 1.0:  # reduced here (8-bit) rather than as a float tensor of the full photo
            rgb = rgb.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)
        t = torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255)
        sx, sy = w / rgb.size[0], h / rgb.size[1]
        out = []
        for part in fn(t.to(self.device)):
            a = part.cpu().double().numpy().reshape(-1, 5)
            out.append(a * [sx, sy, sx, sy, 1.0])
        return tuple(out)


def default_face_detector() -> str:
    """The face detector of photo mode and video when none is named: ``sht`` where this installation ships its
    weights (``sht/weights/face-detector.safetensors``; shipped because it beats Haar at every face size in
    benchmarks/RESULTS.md, "Face detection"), else ``haar``."""
    return "sht" if FACE_DETECTOR_WEIGHTS.is_file() else "haar"


def make_face_detector(name: str) -> HaarFaceDetector | DlibFaceDetector | ShtFaceDetector:
    """``haar`` (OpenCV, always available), ``dlib`` (HOG, the dlib extra), ``sht`` (sht's own, the shipped
    weights; :func:`default_face_detector`), ``sht-fast`` (the same without the enlarged level for the smallest
    faces: about 40 % of the time, fewer faces under 28 px; benchmarks/RESULTS.md, "Face detection") or the
    path of a ``.safetensors`` file of sht's face detector."""
    if name == "haar":
        return HaarFaceDetector()
    if name == "dlib":
        return DlibFaceDetector()
    if name == "sht":
        return ShtFaceDetector()
    if name == "sht-fast":
        return ShtFaceDetector(upsample=1.0)
    if name.endswith(".safetensors"):
        return ShtFaceDetector(name)
    raise ValueError(
        f"unknown face detector {name!r}; choose haar, dlib, sht, sht-fast or a face-detector .safetensors file"
    )


def face_detector_calibration(name: str) -> BoxCalibration:
    """The box calibration of face detector ``name`` (as :func:`make_face_detector` reads it), without loading
    it: boxes given by hand are read as that detector's boxes."""
    return {"haar": HAAR_CALIBRATION, "dlib": DLIB_CALIBRATION}.get(name, LANDMARK_BOX_CALIBRATION)


def crop_size_for(crop: CropBox, face_size: int) -> int:
    """Pixels of the crop image: the face's native resolution (at least 8), at most the model's face size."""
    return int(min(face_size, max(8, round(crop.side))))


def refine_crops(
    landmarks: LandmarkFn,
    images: Sequence[Image.Image],
    crops: Sequence[CropBox],
    face_size: int,
    rounds: int = 2,
    margin: float = 1.3,
) -> tuple[list[CropBox], list[np.ndarray]]:
    """Re-centre each crop on the landmarks the model finds in it, ``rounds`` times; returns the crops and the
    last landmarks (source-image pixels). Crops are taken at the face's native resolution (``crop_size_for``),
    as the model expects low-resolution faces."""
    cur = list(crops)
    pts: list[np.ndarray] = [np.zeros((0, 2))] * len(cur)
    for _ in range(rounds):
        sizes = [crop_size_for(c, face_size) for c in cur]
        views = [crop_image(im, c, n) for im, c, n in zip(images, cur, sizes, strict=True)]
        found = landmarks(views)
        pts = [c.to_source(p, n) for c, p, n in zip(cur, found, sizes, strict=True)]
        cur = [canonical_box(p, margin) for p in pts]
    return cur, pts


def landmark_locator(
    landmarks: LandmarkFn, face_size: int, rounds: int = 2, track_window: int = 5, margin: float = 1.3
) -> Callable[[Sequence[Image.Image], Sequence[CropBox], bool], list[CropBox]]:
    """The ``detector`` crop policy of unlabeled data (:mod:`sht.data.unlabeled`) as a callable
    ``(images, fallback crops, track) -> crops``: the largest Haar face (calibrated) replaces the fallback where
    one is found, the crops are refined with the landmark model, and along a clip (``track``) smoothed over
    ``track_window`` frames."""
    haar = HaarFaceDetector()

    def locate(images: Sequence[Image.Image], fallback: Sequence[CropBox], track: bool) -> list[CropBox]:
        crops = list(fallback)
        for i, im in enumerate(images):
            found = haar(im)
            if found:
                crops[i] = haar.calibration.to_crop(found[0])
        crops, _ = refine_crops(landmarks, images, crops, face_size, rounds, margin)
        return smooth_crops(crops, track_window) if track else crops

    return locate


def smooth_crops(crops: Sequence[CropBox], window: int) -> list[CropBox]:
    """Running median of the crops' centres and sides over ``window`` neighbouring frames (tracking jitter)."""
    if window <= 1 or len(crops) < 2:
        return list(crops)
    arr = np.array([[c.x0 + c.side / 2, c.y0 + c.side / 2, c.side] for c in crops])
    half = window // 2
    out = []
    for i in range(len(arr)):
        cx, cy, side = np.median(arr[max(0, i - half) : i + half + 1], axis=0)
        out.append(CropBox(float(cx - side / 2), float(cy - side / 2), float(side)))
    return out
