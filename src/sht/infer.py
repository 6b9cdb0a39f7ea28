"""Inference: load a DHLN checkpoint and run it on face crops of any resolution.

The crop contract (``sht detect``): every input is a face crop in the canonical convention (square, centred on
the 68-point box, side 1.3 x its larger side) at any resolution, e.g. 16x16. It is resized (bicubic) to the
network input, and the landmarks come back in that input image's own pixel coordinates (x right, y down, the
image spanning ``[0, W] x [0, H]``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .checkpoint import CheckpointError, load_module, read_checkpoint
from .config import Config, ConfigError, config_from_dict
from .data import degradation
from .data.formats import scheme_for, to_rgb8
from .data.heatmaps import HeatmapCodec
from .data.transforms import crop_image
from .faces import (
    BoxCalibration,
    FaceBox,
    crop_size_for,
    default_face_detector,
    face_detector_calibration,
    make_face_detector,
    refine_crops,
)
from .models.factory import build_model
from .models.flip import FlipTest
from .models.ghcu import GHCU, CorrectedModel

if TYPE_CHECKING:
    from .models.dhln import DHLNOutput
    from .video import Track, TrackConfig


def _to_tensor(img: Image.Image, cap: int) -> torch.Tensor:
    """``(1, 3, H, W)`` float in [0, 1]; sides above ``cap`` are reduced first."""
    rgb = img.convert("RGB")
    if max(rgb.size) > cap:
        rgb = rgb.resize((min(rgb.size[0], cap), min(rgb.size[1], cap)), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(rgb, dtype=np.float32)).permute(2, 0, 1)[None] / 255.0


@dataclass
class Prediction:
    """Landmarks ``(K, 2)`` in the input image's pixels, per-point heatmap peaks, and the hallucinated face."""

    landmarks: np.ndarray | None
    scores: np.ndarray | None
    face: Image.Image | None


BACKENDS = ("torch", "onnx")


class Predictor:
    """A DHLN (or SHN/FHS) with its heatmap codec, ready for inference on crops: inference mode, channels-last,
    bf16 autocast on CUDA (``amp``, default on there) and optionally ``torch.compile`` (``compile=True``: faster at
    small batches after a compilation of tens of seconds; see benchmarks/RESULTS.md).

    ``backend="onnx"``: the network runs in ONNX Runtime on CPU (:class:`sht.ort.OrtBackend`, the ``export``
    extra), the heatmaps are decoded by the same torch code. ``threads``: ONNX Runtime's intra-op threads, or for
    ``torch`` ``torch.set_num_threads`` (process-wide); 0 keeps the default. ``onnx_cache``: a folder to keep the
    ONNX graphs in instead of building them in memory. ``flip``: the flip test (:class:`sht.models.flip.FlipTest`;
    DHLN only): each crop and its mirror image, the predictions averaged, at twice the work."""

    def __init__(
        self,
        model: torch.nn.Module,
        codec: HeatmapCodec,
        config: Config,
        device: torch.device | str = "cpu",
        source: str = "",
        amp: bool | None = None,
        compile: bool = False,
        backend: str = "torch",
        threads: int = 0,
        onnx_cache: str | Path | None = None,
        flip: bool = False,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
        if flip:
            if config.model.arch != "dhln" or isinstance(model, CorrectedModel):
                raise ConfigError("the flip test is for DHLN models (not JASRNet or a GHCU-corrected model)")
            model = FlipTest(model, scheme_for(config.model.num_landmarks).flip)
        self.flip = bool(flip)
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().to(memory_format=torch.channels_last)
        self.codec = codec
        self.config = config
        self.source = source
        self.amp = self.device.type == "cuda" if amp is None else amp
        if self.amp and self.device.type != "cuda":
            raise ValueError("amp (bf16 autocast) is for CUDA devices")
        self.backend = backend
        self.forward: Callable[..., DHLNOutput]
        if backend == "onnx":
            if self.device.type != "cpu" or self.amp or compile:
                raise ConfigError("the onnx backend runs on CPU, without amp or compile")
            from .ort import OrtBackend

            self.forward = OrtBackend(self.model, threads, onnx_cache)
        else:
            self.forward = torch.compile(self.model) if compile else self.model
            if threads:
                torch.set_num_threads(threads)

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: torch.device | str = "cpu", ghcu: bool = True, **kwargs: Any
    ) -> Predictor:
        """Load any sht checkpoint that holds DHLN (or JASRNet) weights (training or release), checking its config;
        a GHCU stored with them corrects the landmarks unless ``ghcu=False``."""
        tensors, doc = read_checkpoint(path)
        if "config" not in doc:
            raise CheckpointError(f"{path}: holds no config; cannot rebuild the model")
        try:
            cfg = config_from_dict(doc["config"])
        except ConfigError as exc:
            raise CheckpointError(f"{path}: its config does not fit this sht version ({exc})") from None
        model = build_model(cfg.model)
        load_module(model, tensors, "dhln", str(path))
        codec = HeatmapCodec.from_config(cfg)
        if ghcu and any(k.startswith("ghcu.") for k in tensors):  # Semantic Alignment's correction unit
            model = CorrectedModel(model, GHCU(cfg.model.num_landmarks, cfg.ghcu.input_size), codec)
            load_module(model.ghcu, tensors, "ghcu", str(path))
        return cls(model.float(), codec, cfg, device, str(path), **kwargs)

    @property
    def input_size(self) -> int:
        return self.config.model.input_size

    @property
    def face_size(self) -> int:
        return self.config.model.face_size

    def prepare(self, images: Sequence[Image.Image], face: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """RGB crops of any size -> network input batch and bicubic faces (None unless ``face``; the same resizing
        as in training). Crops larger than 4x the face size are first reduced with PIL's antialiased bicubic
        (memory)."""
        lrs = [_to_tensor(im, 4 * self.face_size) for im in images]
        inputs = torch.cat([degradation.to_input(t, self.input_size) for t in lrs])
        base = torch.cat([degradation.to_input(t, self.face_size) for t in lrs]) if face else None
        return inputs, base

    @torch.inference_mode()
    def predict(self, images: Sequence[Image.Image], batch_size: int = 64, face: bool = True) -> list[Prediction]:
        """Landmarks in each image's own pixel coordinates and the hallucinated face (``face_size`` px);
        ``face=False``: landmarks only, the same ones, without the work that only makes the face (face None)."""
        out: list[Prediction] = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            inputs, base = self.prepare(chunk, face)
            inputs = inputs.to(self.device)
            if self.backend == "torch":
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
                res = self.forward(inputs, None if base is None else base.to(self.device), face=face)
            pts = scores = None
            if res.heatmaps:
                p, s = self.codec.decode(res.final_heatmaps.float())
                p = res.points.float() if res.points is not None else p  # GHCU's corrected points when present
                pts, scores = p.cpu().double().numpy(), s.cpu().numpy()
            faces = degradation.quantize(res.face.float()).cpu() if res.face is not None else None
            for j, im in enumerate(chunk):
                lm = None
                if pts is not None:
                    w, h = im.size
                    lm = pts[j] * [w / self.face_size, h / self.face_size]
                img = None
                if faces is not None:
                    arr = (faces[j].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
                    img = Image.fromarray(arr)
                out.append(Prediction(lm, scores[j] if scores is not None else None, img))
        return out

    def landmarks_of(self, images: list[Image.Image]) -> list[np.ndarray]:
        """Landmarks only, in each image's pixels (the :data:`sht.faces.LandmarkFn` of this model)."""
        return [p.landmarks for p in self.predict(images, face=False)]

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def member_for(self, side: int) -> Predictor:
        """The predictor of a crop whose larger side is ``side`` px: this one (a family picks a member)."""
        return self


class PredictorFamily:
    """Several predictors behind the :class:`Predictor` interface, each for crops up to a size: a crop goes to the
    first member whose ``max_side`` is at least its larger side, the last member (``max_side`` None) takes the rest.
    The release family (:data:`RELEASE_FAMILY`) puts a 16 px-input model on the smallest crops, which it runs about
    4x cheaper, a 32 px-input one above and a 64 px-input one on crops above 32 px, which keeps their detail;
    the crop size is the face's native resolution in photo and video mode (:func:`sht.faces.crop_size_for`), so
    the choice follows the face's size. Members share the face size, the crop margin and the landmark scheme, so
    their outputs are interchangeable; ``config`` is the last member's."""

    def __init__(self, members: Sequence[tuple[Predictor, int | None]]) -> None:
        if not members or members[-1][1] is not None or any(m is None for _, m in members[:-1]):
            raise ConfigError("a predictor family needs members with max sizes, the last one with None (the rest)")
        sides = [m for _, m in members[:-1]]
        if sides != sorted(set(sides)):
            raise ConfigError(f"the family's max sizes must increase, got {sides}")
        ref = members[-1][0].config
        for pred, _ in members:
            c = pred.config
            same = (c.model.face_size, c.data.margin, c.model.num_landmarks)
            if same != (ref.model.face_size, ref.data.margin, ref.model.num_landmarks):
                raise ConfigError(f"{pred.source}: face size, margin or landmarks differ from {members[-1][0].source}")
        self.members = list(members)

    @classmethod
    def from_files(
        cls,
        files: Sequence[tuple[str | Path, int | None] | tuple[str | Path, int | None, bool]],
        device: torch.device | str = "cpu",
        **kwargs: Any,
    ) -> PredictorFamily:
        """Members ``(weights, max_side[, flip])``; ``flip=`` in ``kwargs`` sets the flip test of every member,
        otherwise each member's own (default off)."""
        flip = kwargs.pop("flip", None)
        members = []
        for f in files:
            own = bool(f[2]) if len(f) > 2 else False  # type: ignore[misc]
            pred = Predictor.from_checkpoint(f[0], device, flip=own if flip is None else flip, **kwargs)
            members.append((pred, f[1]))
        return cls(members)

    def member_for(self, side: int) -> Predictor:
        """The member that predicts a crop whose larger side is ``side`` pixels."""
        return next(p for p, m in self.members if m is None or side <= m)

    @property
    def config(self) -> Config:
        return self.members[-1][0].config

    @property
    def input_size(self) -> int:
        return self.members[-1][0].input_size

    @property
    def face_size(self) -> int:
        return self.members[-1][0].face_size

    @property
    def source(self) -> str:
        return " + ".join(p.source for p, _ in self.members)

    @property
    def backend(self) -> str:
        return self.members[-1][0].backend

    @property
    def num_parameters(self) -> int:
        return sum(p.num_parameters for p, _ in self.members)

    def predict(self, images: Sequence[Image.Image], batch_size: int = 64, face: bool = True) -> list[Prediction]:
        """:meth:`Predictor.predict`, each crop by its member (one batched call per member), in input order."""
        groups: dict[int, list[int]] = {}
        for i, im in enumerate(images):
            pred = self.member_for(max(im.size))
            groups.setdefault(id(pred), []).append(i)
        out: list[Prediction | None] = [None] * len(images)
        for pred, _ in self.members:
            idx = groups.get(id(pred), [])
            if idx:
                for i, r in zip(idx, pred.predict([images[i] for i in idx], batch_size, face), strict=True):
                    out[i] = r
        return out  # type: ignore[return-value]

    def landmarks_of(self, images: list[Image.Image]) -> list[np.ndarray]:
        return [p.landmarks for p in self.predict(images, face=False)]


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RELEASE_WEIGHTS = WEIGHTS_DIR / "sht-small.safetensors"
#: The release family: (weights, largest crop side it predicts, flip test), smallest input first; the last shipped
#: member takes every larger crop. The boundaries are where each member stops beating the next one (with their flip
#: tests) on the validation split (benchmarks/family.py, results/family.json); the flip test is on where it lowered
#: the validation NME on the sizes the member serves (benchmarks/flip_test.py, results/flip_test.json).
RELEASE_FAMILY: tuple[tuple[Path, int | None, bool], ...] = (
    (WEIGHTS_DIR / "sht-small16.safetensors", 16, False),
    (RELEASE_WEIGHTS, 32, True),
    (WEIGHTS_DIR / "sht-small64.safetensors", None, True),
)


def release_members() -> list[tuple[Path, int | None, bool]]:
    """The :data:`RELEASE_FAMILY` members that ship in this installation (the main weights must), the last one
    taking every crop larger than the one before it."""
    release_weights()  # one clear line when the main weights are missing
    files = [m for m in RELEASE_FAMILY if m[0].is_file()]
    return files[:-1] + [(files[-1][0], None, files[-1][2])]


def release_predictor(device: torch.device | str = "cpu", **kwargs: Any) -> Predictor | PredictorFamily:
    """The release model: the shipped members of :data:`RELEASE_FAMILY` (:func:`release_members`; a family when
    more than the main weights are there, else the main :class:`Predictor`), each with its flip test unless
    ``flip=`` is given."""
    files = release_members()
    if len(files) == 1:
        flip = kwargs.pop("flip", None)
        return Predictor.from_checkpoint(files[0][0], device, flip=files[0][2] if flip is None else flip, **kwargs)
    return PredictorFamily.from_files(files, device, **kwargs)


def release_weights() -> Path:
    """The weights shipped inside the package (trained by the project, see MODEL_CARD.md)."""
    if not RELEASE_WEIGHTS.is_file():
        raise CheckpointError(
            f"no release weights in this installation ({RELEASE_WEIGHTS} is missing); pass weights=PATH"
        )
    return RELEASE_WEIGHTS


@dataclass
class Face:
    """One face found in a photo: its box (detected or given), the canonical crop box, the landmarks in photo
    pixels, their heatmap peaks, the hallucinated face and the face detector's score (None for a given box)."""

    box: tuple[float, float, float, float] | None
    crop: tuple[float, float, float]
    landmarks: np.ndarray
    scores: np.ndarray
    face: Image.Image | None
    box_score: float | None = None


class Detector:
    """Low-resolution landmark detector with face hallucination, in the spirit of face-alignment's API.

    ``Detector()`` loads the release model that ships with sht (a family of models chosen by the crop's size:
    :func:`release_predictor`); ``Detector(weights=PATH)`` any sht checkpoint.
    ``landmarks(crop)`` / ``hallucinate(crop)`` take canonical face crops of any size (e.g. 16x16);
    ``detect(photo, boxes=None)`` finds faces (by default sht's own face detector where its weights ship, else
    OpenCV's Haar cascade: :func:`~sht.faces.default_face_detector`; ``face_detector='haar'``, ``'dlib'`` (HOG),
    ``'sht'``, a face-detector ``.safetensors`` path, or any callable image -> :class:`~sht.faces.FaceBox` list
    with a ``calibration``; boxes given by hand are read as that detector's boxes), crops them canonically,
    refines the crop with the landmarks and returns landmarks in photo coordinates; ``track(video)`` follows the
    faces of a video with stable ids (:mod:`sht.video`). The face detector is :meth:`face_detector` (one place to
    change it). Works on CPU or CUDA (``device``); ``backend`` and ``threads`` as in :class:`Predictor`
    (``backend="onnx"``: ONNX Runtime on CPU); ``flip``: the flip test on or off for every model (default: each
    release member's own choice, :data:`RELEASE_FAMILY`; off for ``weights``)."""

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        face_detector: str | Callable[[Image.Image], list[FaceBox]] | None = None,
        refine: int = 2,
        compile: bool = False,
        backend: str = "torch",
        threads: int = 0,
        flip: bool | None = None,
    ) -> None:
        kw: dict[str, Any] = {"compile": compile, "backend": backend, "threads": threads}
        self.predictor: Predictor | PredictorFamily = (
            release_predictor(device, flip=flip, **kw)
            if weights is None
            else Predictor.from_checkpoint(weights, device, flip=bool(flip), **kw)
        )
        if not self.predictor.config.model.has_landmarks:
            raise CheckpointError(f"{self.predictor.source}: an FHS (face-only) model cannot detect landmarks")
        if face_detector is None:
            face_detector = default_face_detector()
        self.face_detector_name = (
            face_detector if isinstance(face_detector, str) else getattr(face_detector, "name", "")
        )
        self._face_detector = None if isinstance(face_detector, str) else face_detector
        self.refine = refine

    @property
    def config(self) -> Config:
        return self.predictor.config

    def landmarks(self, crops: Image.Image | Sequence[Image.Image]) -> np.ndarray | list[np.ndarray]:
        """``(K, 2)`` landmarks in the crop's pixels (a list for a list of crops)."""
        single = isinstance(crops, Image.Image)
        preds = self.predictor.predict([crops] if single else list(crops), face=False)
        out = [p.landmarks for p in preds]
        return out[0] if single else out  # type: ignore[return-value]

    def hallucinate(self, crops: Image.Image | Sequence[Image.Image]) -> Image.Image | list[Image.Image]:
        """The hallucinated face (``face_size`` pixels) of each crop."""
        single = isinstance(crops, Image.Image)
        preds = self.predictor.predict([crops] if single else list(crops))
        if preds and preds[0].face is None:
            raise CheckpointError(f"{self.predictor.source}: an SHN (landmarks-only) model does not hallucinate")
        out = [p.face for p in preds]
        return out[0] if single else out  # type: ignore[return-value]

    def face_detector(self):  # noqa: ANN201 - a callable image -> list[FaceBox]
        if self._face_detector is None:
            self._face_detector = make_face_detector(self.face_detector_name)
        return self._face_detector

    def _calibration(self) -> BoxCalibration:
        """The box calibration of the face detector (given boxes are read as its boxes), without loading it."""
        if self._face_detector is not None:
            return self._face_detector.calibration
        return face_detector_calibration(self.face_detector_name)

    def track(
        self,
        frames: str | Path | Iterable[Any],
        config: TrackConfig | None = None,
        fps: float = 30.0,
        boxes: Sequence[Sequence[float]] | None = None,
        face_detector: Callable[[Image.Image], list[FaceBox]] | None = None,
    ) -> Track:
        """Landmarks of every face along a video (a path, or an iterable of frames / PIL images / arrays at
        ``fps``), tracked from frame to frame with stable ids: iterate the result for one
        :class:`sht.video.FrameResult` per frame (see :mod:`sht.video` for the tracking and lost rules).
        ``boxes``: face boxes on the first frame instead of the face detector; ``face_detector``: another one than
        :meth:`face_detector` for this clip (a callable with a ``calibration``)."""
        from .video import Track

        return Track(self, frames, config, fps=fps, boxes=boxes, face_detector=face_detector)

    def detect(
        self, image: Image.Image, boxes: Sequence[Sequence[float]] | None = None, face: bool = True
    ) -> list[Face]:
        """Faces of a photo: detector boxes (or ``boxes``, ``(x0, y0, x1, y1)`` given instead of the face
        detector) -> calibrated canonical crops -> refined with the landmarks -> a final prediction on the final
        crop (landmarks in photo pixels, hallucinated face; ``face=False``: the same landmarks, no face)."""
        return self.detect_many([image], None if boxes is None else [boxes], face=face)[0]

    def detect_many(
        self,
        images: Sequence[Image.Image],
        boxes: Sequence[Sequence[Sequence[float]]] | None = None,
        face: bool = True,
    ) -> list[list[Face]]:
        """:meth:`detect` for several photos at once, the crops of all photos predicted in batches."""
        fd = self.face_detector() if boxes is None else None
        photos = [to_rgb8(im) for im in images]
        if boxes is not None and len(boxes) != len(photos):
            raise ValueError(f"boxes: one list per image expected, got {len(boxes)} for {len(photos)} images")
        found = [
            [FaceBox(*map(float, b[:4])) for b in boxes[i]] if fd is None else fd(im) for i, im in enumerate(photos)
        ]
        owner = [i for i, fb in enumerate(found) for _ in fb]
        flat = [b for fb in found for b in fb]
        out: list[list[Face]] = [[] for _ in photos]
        if not flat:
            return out
        pred = self.predictor
        srcs = [photos[i] for i in owner]
        calibration = fd.calibration if fd is not None else self._calibration()
        crops = [calibration.to_crop(b) for b in flat]
        crops, _ = refine_crops(pred.landmarks_of, srcs, crops, pred.face_size, self.refine, pred.config.data.margin)
        sizes = [crop_size_for(c, pred.face_size) for c in crops]
        views = [crop_image(im, c, n) for im, c, n in zip(srcs, crops, sizes, strict=True)]
        for i, b, c, n, p in zip(owner, flat, crops, sizes, pred.predict(views, face=face), strict=True):
            score = None if fd is None else b.score
            box = (b.x0, b.y0, b.x1, b.y1)
            out[i].append(Face(box, (c.x0, c.y0, c.side), c.to_source(p.landmarks, n), p.scores, p.face, score))
        return out
