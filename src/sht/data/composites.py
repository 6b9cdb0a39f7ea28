"""Training images for the face detector: labeled faces pasted, with their surround, onto face-free backgrounds.

A face comes from a labeled source as a canonical crop with context (:class:`~sht.data.dataset.FaceSet`), is
scaled so that the larger side of its 68-point landmark box is the drawn size (10-120 px by default), optionally
flipped, rotated in the plane and degraded (bicubic down and back up, Gaussian blur), colour-jittered and pasted
through a feathered elliptic mask that keeps hair, ears and some background around it. Its box is the landmark
box of the transformed points, exact to the pixel mapping. Images hold several faces (or a crowd of small ones, or
none), some cut by the border (a face whose centre falls outside the image becomes an ignored region), and hard
negatives: scrambled face crops, off-face patches of the face photos and the non-face LFW patches of scikit-image.
The finished image gets noise, sometimes loses its colour, and JPEG. Everything is a function of a numpy seed
(:func:`image_rng`).

Backgrounds (``builtin``): the sample photos that ship with scikit-image and matplotlib, except those with a face
and the benchmark's (:data:`HELD_OUT_IMAGES`, :data:`BENCHMARK_BACKGROUNDS`), and procedural textures; the
non-face half of ``skimage.data.lfw_subset()`` is split in two: :data:`LFW_TRAIN_NONFACES` are hard negatives,
the rest is never trained on. Without shared data the faces can be generated ones (``synthetic:N``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter

from ..config import CompositeConfig
from . import degradation
from .dataset import FaceSet, load_source
from .formats import IMAGE_SUFFIXES, DataError, load_image
from .splits import YTF_PERSON, identity_keys, identity_split

# Sample images that show a face (never a background) or are the benchmark's test photos.
HELD_OUT_IMAGES = ("astronaut", "camera", "no_time_for_that_tiny", "grace_hopper")
# scikit-image samples kept out of training for the benchmark's held-out composites.
BENCHMARK_BACKGROUNDS = ("chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right", "text")
# Indices (in skimage.data.lfw_subset()) of the non-face patches used as training negatives; 150-199 are held out.
LFW_TRAIN_NONFACES = range(100, 150)
LFW_HELD_OUT_NONFACES = range(150, 200)


def sample_image_files() -> dict[str, Path]:
    """The sample photos of scikit-image and matplotlib on this machine, by stem (nothing is downloaded)."""
    import matplotlib
    import skimage.data

    out: dict[str, Path] = {}
    for folder in (Path(skimage.data.__file__).parent, Path(matplotlib.get_data_path()) / "sample_data"):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
                    out.setdefault(p.stem, p)
    return out


def _to_tensor(img: Image.Image, max_side: int) -> torch.Tensor:
    if max(img.size) > max_side:
        s = max_side / max(img.size)
        img = img.resize((max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s))), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1).contiguous()


def load_backgrounds(
    specs: Sequence[str], names: Sequence[str] | None = None, max_side: int = 640
) -> list[torch.Tensor]:
    """Background photos as ``(3, H, W)`` uint8: ``builtin`` = the training sample photos (or exactly ``names``
    of :func:`sample_image_files` when given), folders = every image in them."""
    out: list[torch.Tensor] = []
    for spec in specs:
        if spec == "builtin":
            files = sample_image_files()
            keep = (
                names
                if names is not None
                else [n for n in files if n not in HELD_OUT_IMAGES and n not in BENCHMARK_BACKGROUNDS]
            )
            for n in keep:
                if n not in files:
                    raise DataError(f"sample image {n!r} is not installed (scikit-image / matplotlib)")
                out.append(_to_tensor(load_image(files[n]), max_side))
            continue
        folder = Path(spec)
        if not folder.is_dir():
            raise DataError(f"background source {spec!r} is neither 'builtin' nor a folder")
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{folder}: holds no background images")
        out.extend(_to_tensor(load_image(p), max_side) for p in found)
    return [t for t in out if min(t.shape[-2:]) >= 16]


def lfw_nonfaces(index: Sequence[int] | range = LFW_TRAIN_NONFACES) -> torch.Tensor:
    """Non-face 25x25 patches of ``skimage.data.lfw_subset()`` as ``(N, 3, 25, 25)`` uint8."""
    from skimage.data import lfw_subset

    arr = lfw_subset()[list(index)]
    t = torch.from_numpy(np.round(arr * 255).astype(np.uint8))
    return t[:, None].expand(-1, 3, -1, -1).contiguous()


# --------------------------------------------------------------------------------------------------------------
# Faces
# --------------------------------------------------------------------------------------------------------------


@dataclass
class FaceBank:
    """Face crops with context, their landmarks, the part of each crop that is photo (not black padding:
    ``valid`` ``(N, 4)`` as x0, y0, x1, y1 crop pixels) and an identity key per face."""

    faces: FaceSet
    valid: torch.Tensor
    keys: list[str]

    def __len__(self) -> int:
        return len(self.faces)

    def subset(self, mask: torch.Tensor) -> FaceBank:
        idx = mask.nonzero()[:, 0]
        return FaceBank(self.faces.subset(idx), self.valid[idx], [self.keys[i] for i in idx.tolist()])


def _valid_rect(images: torch.Tensor, dark: int = 12, share: float = 0.9) -> torch.Tensor:
    """Per crop the rectangle inside the black strips at its edges (where a crop left its photo)."""
    black = images.amax(1) <= dark  # (N, C, C)
    c = images.shape[-1]

    def inner(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = rows.int().cumprod(1).sum(1)
        trail = rows.flip(1).int().cumprod(1).sum(1)
        return lead, c - trail

    y0, y1 = inner(black.float().mean(2) >= share)
    x0, x1 = inner(black.float().mean(1) >= share)
    return torch.stack([x0, y0, x1, y1], 1).float()


def load_faces(
    sources: Sequence[str], face_size: int, context: float, cache_dir: str | None = None, progress: bool = False
) -> FaceBank:
    """Faces of the labeled sources as a :class:`FaceBank` (crops cached like the landmark model's)."""
    sets, keys = [], []
    for src in sources:
        fs = load_source(src, face_size, 1.3, context, 68, cache_dir or None, progress=progress)
        if fs.points is None:
            raise DataError(f"{src}: the face detector needs labeled faces (68 points)")
        synthetic = src.startswith("synthetic:")
        keys += identity_keys(fs.names, None if synthetic else YTF_PERSON, f"{src}/")  # copies split together
        sets.append(fs)
    if not sets:
        raise DataError("data.train is empty: give at least one labeled face source")
    faces = FaceSet.concat(sets)
    return FaceBank(faces, _valid_rect(faces.images), keys)


def split_faces(bank: FaceBank, fraction: float, seed: int) -> tuple[FaceBank, FaceBank | None]:
    """Training and validation faces: ``fraction`` of the faces, whole identities, drawn with ``seed``."""
    if fraction <= 0:
        return bank, None
    held = identity_split(bank.keys, fraction, seed)
    if held.all() or not held.any():
        return bank, None
    return bank.subset(~held), bank.subset(held)


# --------------------------------------------------------------------------------------------------------------
# Compositing
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Composite:
    """An image ``(3, H, W)`` in [0, 1], its faces' landmark boxes ``(N, 4)``, ignored regions ``(M, 4)`` (faces
    whose centre is outside the image) and the bank index of each box's face ``(N,)``."""

    image: torch.Tensor
    boxes: torch.Tensor
    ignore: torch.Tensor
    faces: torch.Tensor


def image_rng(seed: int, step: int, index: int, stream: int = 0) -> np.random.Generator:
    """The random stream of image ``index`` of training step ``step`` (``stream`` 1: validation images)."""
    return np.random.default_rng([seed, stream, step, index])


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of a ``(3, H, W)`` image in [0, 1] (PIL's, on its 8-bit levels)."""
    if sigma <= 0.05:
        return image
    arr = (degradation.quantize(image).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    out = Image.fromarray(arr).filter(ImageFilter.GaussianBlur(float(sigma)))
    return torch.from_numpy(np.asarray(out, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """JPEG round trip of a ``(3, H, W)`` image in [0, 1]."""
    arr = (degradation.quantize(image).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(out.copy()).permute(2, 0, 1)


def _colour(x: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation jitter of ``(3, H, W)`` in [0, 1] (``1 +- strength``)."""
    if strength <= 0:
        return x
    b, c, s = 1 + rng.uniform(-strength, strength, 3)
    x = x * b
    mean = x.mean()
    x = (x - mean) * c + mean
    grey = (0.299 * x[0:1] + 0.587 * x[1:2] + 0.114 * x[2:3]).expand_as(x)
    return ((x - grey) * s + grey).clamp(0, 1)


def _ellipse_mask(n: int, cx: float, cy: float, ax: float, ay: float, feather: float = 0.25) -> torch.Tensor:
    """``(n, n)`` 1 inside the ellipse's ``1 - feather`` core, falling smoothly to 0 at its rim."""
    yy = (torch.arange(n, dtype=torch.float32)[:, None] + 0.5 - cy) / max(ay, 1e-3)
    xx = (torch.arange(n, dtype=torch.float32)[None, :] + 0.5 - cx) / max(ax, 1e-3)
    t = ((1 - torch.sqrt(xx**2 + yy**2)) / feather).clamp(0, 1)
    return t * t * (3 - 2 * t)


def procedural_background(rng: np.random.Generator, width: int, height: int) -> torch.Tensor:
    """A face-free texture ``(3, H, W)`` in [0, 1]: a gradient, smooth noise, blobs, bars and lines."""
    m = 32
    c1, c2 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = (np.mgrid[0:m, 0:m] + 0.5) / m - 0.5
    g = np.clip(0.5 + xx * math.cos(ang) + yy * math.sin(ang), 0, 1)[..., None]
    arr = (c1 * (1 - g) + c2 * g) * 255
    noise = Image.fromarray(np.uint8(np.clip(128 + 50 * rng.normal(0, 1, (6, 6, 3)), 0, 255)))
    arr += (np.asarray(noise.resize((m, m), Image.Resampling.BICUBIC), dtype=np.float64) - 128) * rng.uniform(0, 0.8)
    img = Image.fromarray(np.uint8(np.clip(arr, 0, 255))).resize((width, height), Image.Resampling.BILINEAR)
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(rng.integers(2, 12))):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.02, 0.5) * width, rng.uniform(0.02, 0.5) * height
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) + (int(rng.integers(60, 256)),)
        kind = rng.integers(3)
        if kind == 0:
            d.ellipse([x0, y0, x0 + w, y0 + h], fill=fill)
        elif kind == 1:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
        else:
            d.line([x0, y0, x0 + w, y0 + h * rng.choice([-1, 1])], fill=fill, width=int(rng.integers(1, 6)))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 2.0)))
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1).contiguous()


def _rotate(patch: torch.Tensor, angle: float, cx: float, cy: float) -> torch.Tensor:
    """Rotate ``(C, n, n)`` by ``angle`` radians (clockwise in the image) about ``(cx, cy)`` (bilinear)."""
    n = patch.shape[-1]
    cos, sin = math.cos(angle), math.sin(angle)
    # output pixel p -> source pixel R^-1 (p - c) + c, in normalised coordinates
    c = torch.tensor([cx, cy]) / n * 2 - 1
    rinv = torch.tensor([[cos, sin], [-sin, cos]])
    t = c - rinv @ c
    theta = torch.cat([rinv, t[:, None]], 1)[None].float()
    grid = F.affine_grid(theta, [1, patch.shape[0], n, n], align_corners=False)
    return F.grid_sample(patch[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def _paste(canvas: torch.Tensor, patch: torch.Tensor, alpha: torch.Tensor, x: int, y: int) -> None:
    """Alpha-blend ``patch`` ``(3, n, n)`` into ``canvas`` with its top-left corner at ``(x, y)`` (clipped)."""
    _, h, w = canvas.shape
    n = patch.shape[-1]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + n), min(h, y + n)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    region = canvas[:, y0:y1, x0:x1]
    canvas[:, y0:y1, x0:x1] = region * (1 - a) + patch[:, y0 - y : y1 - y, x0 - x : x1 - x] * a


class CompositeBuilder:
    """Composite images from a :class:`FaceBank`, background photos and negative patches, as configured."""

    def __init__(
        self,
        faces: FaceBank,
        backgrounds: Sequence[torch.Tensor],
        cfg: CompositeConfig,
        negatives: torch.Tensor | None = None,
        procedural: float = 0.25,
    ) -> None:
        if len(faces) == 0:
            raise DataError("no faces to composite")
        self.faces, self.backgrounds, self.cfg = faces, list(backgrounds), cfg
        self.negatives = negatives
        self.mined: torch.Tensor | None = None  # hard negatives mined with a detector (add_mined)
        self.procedural = procedural if self.backgrounds else 1.0
        pts = faces.faces.points
        assert pts is not None
        self.points = pts.double()

    def add_mined(self, patches: torch.Tensor) -> None:
        """Hard negatives ``(N, 3, n, n)`` uint8 that a detector fired on (:func:`sht.train.face_detector.
        mine_hard_negatives`): from now on one more kind of negative patch, drawn as often as each other kind."""
        self.mined = patches if len(patches) else None

    # -- pieces -----------------------------------------------------------------------------------------------
    def background(self, rng: np.random.Generator, width: int, height: int) -> torch.Tensor:
        """A random view of a background photo (or a procedural texture), ``(3, height, width)`` in [0, 1]."""
        if rng.random() < self.procedural:
            return procedural_background(rng, width, height)
        bg = self.backgrounds[int(rng.integers(len(self.backgrounds)))].float() / 255
        _, bh, bw = bg.shape
        aspect = width / height
        frac = rng.uniform(0.3, 1.0)
        ch = max(8, int(min(bh, bw / aspect) * frac))
        cw = max(8, min(bw, int(ch * aspect)))
        y0, x0 = int(rng.integers(0, bh - ch + 1)), int(rng.integers(0, bw - cw + 1))
        view = bg[None, :, y0 : y0 + ch, x0 : x0 + cw]
        view = F.interpolate(view, size=(height, width), mode="bicubic", antialias=True, align_corners=False)[0]
        if rng.random() < 0.5:
            view = view.flip(-1)
        return _colour(view.clamp(0, 1), rng, self.cfg.colour)

    def face_patch(
        self, rng: np.random.Generator, index: int, side: float
    ) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
        """Face ``index`` scaled so its landmark box's larger side is ``side`` px, flipped/rotated/degraded:
        ``(patch (3, n, n), alpha (n, n), landmark box in patch pixels)``."""
        cfg = self.cfg
        crop = self.faces.faces.images[index].float()[None] / 255
        pts = self.points[index].numpy()
        lo, hi = pts.min(0), pts.max(0)
        big = float(max(hi - lo))
        c = crop.shape[-1]
        n = max(4, int(round(c * side / big)))
        e = n / c  # exact scale of the resize (PIL / antialiased bicubic convention: x -> e x)
        patch = degradation.resize(crop, n).clamp(0, 1)
        if rng.random() < cfg.lowres:
            m = max(3, int(round(n / rng.uniform(1.2, cfg.lowres_max))))
            patch = degradation.resize(degradation.downsample(patch, m), n).clamp(0, 1)
        patch = patch[0]
        if cfg.blur > 0 and rng.random() < 0.5:
            patch = blur(patch, rng.uniform(0.2, cfg.blur))
        patch = _colour(patch, rng, cfg.colour)
        p = pts * e
        centre = (lo + hi) / 2 * e
        # the whole face (its extreme landmarks lie within ~0.5 x big of the centre) and some surround, inside the crop
        ax = big * e * rng.uniform(0.68, 0.85)
        ay = big * e * rng.uniform(0.75, 0.88)
        alpha = _ellipse_mask(n, float(centre[0]), float(centre[1]), ax, ay, feather=rng.uniform(0.12, 0.3))
        vx0, vy0, vx1, vy1 = (self.faces.valid[index] * e).tolist()
        at = torch.arange(n, dtype=torch.float32) + 0.5
        alpha = alpha * _ramp(at, vy0, vy1)[:, None] * _ramp(at, vx0, vx1)[None, :]  # no black padding
        if rng.random() < cfg.flip:
            patch, alpha = patch.flip(-1), alpha.flip(-1)
            p = p.copy()
            p[:, 0] = n - p[:, 0]
        if cfg.rotation > 0 and rng.random() < 0.7:
            ang = math.radians(float(np.clip(rng.normal(0, cfg.rotation / 2), -cfg.rotation, cfg.rotation)))
            cx, cy = ((p.min(0) + p.max(0)) / 2).tolist()
            both = _rotate(torch.cat([patch, alpha[None]]), ang, cx, cy)
            patch, alpha = both[:3], both[3]
            cos, sin = math.cos(ang), math.sin(ang)
            d = p - [cx, cy]
            p = np.stack([cos * d[:, 0] - sin * d[:, 1], sin * d[:, 0] + cos * d[:, 1]], 1) + [cx, cy]
        box = np.concatenate([p.min(0), p.max(0)])
        return patch, alpha, box

    def negative_patch(self, rng: np.random.Generator, side: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A hard negative about ``side`` px: a scrambled face, an off-face patch of a face photo, an LFW
        non-face or a mined one (:meth:`add_mined`), with a feathered mask."""
        n = max(4, int(round(side)))
        kinds = [0, 1] + ([2] if self.negatives is not None and len(self.negatives) else [])
        kinds += [3] if self.mined is not None else []
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == 3:
            src = self.mined[int(rng.integers(len(self.mined)))].float()[None] / 255  # type: ignore[index]
        elif kind == 2:
            src = self.negatives[int(rng.integers(len(self.negatives)))].float()[None] / 255  # type: ignore[index]
        else:
            i = int(rng.integers(len(self.faces)))
            crop = self.faces.faces.images[i].float()[None] / 255
            c = crop.shape[-1]
            pts = self.points[i].numpy()
            lo, hi = pts.min(0), pts.max(0)
            big = float(max(hi - lo))
            if kind == 0:  # the face's own box with its tiles shuffled
                k = int(rng.integers(2, 4))
                cx, cy = (lo + hi) / 2
                half = big * 0.55
                x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
                t = max(2, int(2 * half) // k)
                region = crop[:, :, y0 : y0 + t * k, x0 : x0 + t * k]
                if region.shape[-1] < t * k or region.shape[-2] < t * k:
                    region = F.interpolate(crop, size=(t * k, t * k), mode="bilinear", align_corners=False)
                tiles = [region[..., a * t : (a + 1) * t, b * t : (b + 1) * t] for a in range(k) for b in range(k)]
                order = rng.permutation(len(tiles))
                while (order == np.arange(len(tiles))).all():
                    order = rng.permutation(len(tiles))
                rows = [torch.cat([tiles[order[a * k + b]] for b in range(k)], -1) for a in range(k)]
                src = torch.cat(rows, -2)
            else:  # a corner of the photo, away from the face
                s = max(4, int(c * rng.uniform(0.25, 0.4)))
                corner = int(rng.integers(4))
                x0 = 0 if corner % 2 == 0 else c - s
                y0 = 0 if corner < 2 else c - s
                src = crop[:, :, y0 : y0 + s, x0 : x0 + s]
        patch = degradation.resize(src, n).clamp(0, 1)[0]
        alpha = _ellipse_mask(n, n / 2, n / 2, n / 2 * rng.uniform(0.8, 1.0), n / 2 * rng.uniform(0.8, 1.0))
        return _colour(patch, rng, self.cfg.colour), alpha

    # -- images -----------------------------------------------------------------------------------------------
    def draw_sizes(self, rng: np.random.Generator) -> list[float]:
        """Face sizes of one training image: none, a crowd of small faces, or a few of any size (log-uniform)."""
        cfg = self.cfg
        u = rng.random()
        if u < cfg.empty:
            return []
        if u < cfg.empty + cfg.crowd:
            k = int(rng.integers(cfg.crowd_faces[0], cfg.crowd_faces[1] + 1))
            hi = min(cfg.crowd_max, cfg.max_face)
        else:
            k = int(rng.integers(1, cfg.max_faces + 1))
            hi = cfg.max_face
        return sorted(math.exp(rng.uniform(math.log(cfg.min_face), math.log(hi))) for _ in range(k))

    def compose(
        self,
        rng: np.random.Generator,
        width: int | None = None,
        height: int | None = None,
        sizes: Sequence[float] | None = None,
        faces: Sequence[int] | None = None,
        border: float = 0.3,
    ) -> Composite:
        """One composite image. ``sizes``: the faces' landmark-box larger sides (default :meth:`draw_sizes`);
        ``faces``: which faces of the bank (default random); ``border``: how far (x the face size) a face's
        centre may lie outside the image. Faces are pasted smallest first, each where its surround covers no
        earlier face; a face that finds no place is left out."""
        cfg = self.cfg
        w, h = width or cfg.image_size, height or cfg.image_size
        if cfg.thumbnails > 0 and sizes is None and faces is None and rng.random() < cfg.thumbnails:
            return self.compose_thumbnail(rng, w, h)
        canvas = self.background(rng, w, h)
        sizes = list(sizes) if sizes is not None else self.draw_sizes(rng)
        for _ in range(int(rng.integers(0, cfg.negatives + 1))):
            side = math.exp(rng.uniform(math.log(cfg.min_face), math.log(cfg.max_face)))
            patch, alpha = self.negative_patch(rng, side)
            n = patch.shape[-1]
            _paste(canvas, patch, alpha, int(rng.integers(-n // 3, w - n // 2)), int(rng.integers(-n // 3, h - n // 2)))
        boxes, ignore, taken, used = [], [], [], []
        for k, side in enumerate(sorted(sizes)):
            idx = int(faces[k % len(faces)]) if faces is not None else int(rng.integers(len(self.faces)))
            patch, alpha, box = self.face_patch(rng, idx, side)
            n = patch.shape[-1]
            bw, bh = box[2] - box[0], box[3] - box[1]
            reach = 0.95 * max(bw, bh)  # half the side of a square that holds the pasted surround
            for _try in range(30):
                cx = rng.uniform(-border * bw, w + border * bw)
                cy = rng.uniform(-border * bh, h + border * bh)
                ctx = np.array([cx - reach, cy - reach, cx + reach, cy + reach])
                own = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2])
                # faces come smallest first: a new one may not cover an earlier face, nor sit mostly on its surround
                if all(_covered(b, ctx) < 0.1 and _covered(own, c) < 0.5 for b, c in taken):
                    break
            else:
                continue
            x = int(round(cx - (box[0] + box[2]) / 2))
            y = int(round(cy - (box[1] + box[3]) / 2))
            _paste(canvas, patch, alpha, x, y)
            placed = box + [x, y, x, y]
            taken.append((placed, ctx))
            pcx, pcy = (placed[0] + placed[2]) / 2, (placed[1] + placed[3]) / 2
            if 0 <= pcx < w and 0 <= pcy < h:
                boxes.append(placed)
                used.append(idx)
            else:
                ignore.append(placed)
        canvas = self.finish(rng, canvas)
        return Composite(canvas, _boxes(boxes), _boxes(ignore), torch.tensor(used, dtype=torch.long))

    def compose_thumbnail(self, rng: np.random.Generator, width: int, height: int) -> Composite:
        """A face thumbnail as a small photo is seen (``data.thumbnails``): a square of 1.0-1.3 x the landmark
        box (10-32 px) cut tightly around a face, on a plain frame of its mean colour (what
        :class:`~sht.models.face_detector.DetectSettings`'s ``border`` adds to small photos), often grey."""
        cfg = self.cfg
        idx = int(rng.integers(len(self.faces)))
        side = math.exp(rng.uniform(math.log(cfg.min_face), math.log(min(32.0, cfg.max_face))))
        patch, _, box = self.face_patch(rng, idx, side)
        n = patch.shape[-1]
        big = float(max(box[2] - box[0], box[3] - box[1]))
        cut = min(n, max(4, int(round(big * rng.uniform(1.0, 1.3)))))
        cx = (box[0] + box[2]) / 2 + rng.uniform(-0.08, 0.08) * big
        cy = (box[1] + box[3]) / 2 + rng.uniform(-0.08, 0.12) * big
        x0 = int(min(max(round(cx - cut / 2), 0), n - cut))
        y0 = int(min(max(round(cy - cut / 2), 0), n - cut))
        thumb = patch[:, y0 : y0 + cut, x0 : x0 + cut]
        if rng.random() < 0.5:
            thumb = (0.299 * thumb[0:1] + 0.587 * thumb[1:2] + 0.114 * thumb[2:3]).expand(3, -1, -1)
        canvas = thumb.mean((1, 2), keepdim=True).expand(3, height, width).clone()
        px, py = int(rng.integers(0, max(1, width - cut + 1))), int(rng.integers(0, max(1, height - cut + 1)))
        canvas[:, py : py + cut, px : px + cut] = thumb[:, : height - py, : width - px]
        placed = box + [px - x0, py - y0, px - x0, py - y0]
        return Composite(self.finish(rng, canvas), _boxes([placed]), _boxes([]), torch.tensor([idx]))

    def finish(self, rng: np.random.Generator, image: torch.Tensor) -> torch.Tensor:
        """Whole-image degradations: sometimes bicubic down/up, Gaussian noise, grey, JPEG; 8-bit levels."""
        cfg = self.cfg
        if rng.random() < cfg.lowres / 3:
            _, h, w = image.shape
            f = rng.uniform(1.1, 2.0)
            small = F.interpolate(
                image[None],
                size=(max(2, int(h / f)), max(2, int(w / f))),
                mode="bicubic",
                antialias=True,
                align_corners=False,
            )
            image = F.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        if cfg.noise > 0 and rng.random() < 0.7:
            noise = rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(0, cfg.noise)
            image = (image + torch.from_numpy(noise)).clamp(0, 1)
        if rng.random() < cfg.grey:
            image = (0.299 * image[0:1] + 0.587 * image[1:2] + 0.114 * image[2:3]).expand(3, -1, -1).contiguous()
        if rng.random() < cfg.jpeg:
            return jpeg(image, int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1)))
        return degradation.quantize(image)

    def batch(self, seed: int, step: int, n: int) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """``n`` training composites of step ``step``: images ``(n, 3, S, S)``, boxes and ignored regions."""
        items = [self.compose(image_rng(seed, step, i)) for i in range(n)]
        return torch.stack([c.image for c in items]), [c.boxes for c in items], [c.ignore for c in items]


def _ramp(at: torch.Tensor, lo: float, hi: float, width: float = 2.0) -> torch.Tensor:
    """1 inside ``[lo, hi]``, falling to 0 over ``width`` px at both ends."""
    return ((at - lo).clamp(0, width) / width) * ((hi - at).clamp(0, width) / width)


def _boxes(items: list[np.ndarray]) -> torch.Tensor:
    return torch.tensor(np.array(items), dtype=torch.float32).reshape(-1, 4)


def _covered(box: np.ndarray, region: np.ndarray) -> float:
    """The share of ``box``'s area inside ``region`` (both ``x0, y0, x1, y1``)."""
    iw = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    ih = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    return iw * ih / max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)


def build_training_data(cfg: CompositeConfig, progress: bool = False) -> tuple[CompositeBuilder, list[Composite]]:
    """The training builder and the fixed validation composites of a run (faces held out by identity)."""
    bank = load_faces(cfg.train, cfg.face_size, cfg.context, cfg.cache_dir, progress)
    fit, val = split_faces(bank, cfg.val_fraction, cfg.val_seed)
    bgs = load_backgrounds(cfg.backgrounds)
    negs = lfw_nonfaces() if "builtin" in cfg.backgrounds else None
    builder = CompositeBuilder(fit, bgs, cfg, negs)
    val_images: list[Composite] = []
    if val is not None and cfg.val_images:
        vb = CompositeBuilder(val, bgs, cfg, negs)
        val_images = [vb.compose(image_rng(cfg.val_seed, 0, i, stream=1)) for i in range(cfg.val_images)]
    return builder, val_images
