"""Canonical face crops and batched geometric/photometric augmentation with landmarks kept consistent.

Canonical crop (used everywhere): a square centred on the centre of the landmark bounding box, side =
``margin`` (1.3) x the larger side of that box, resampled (bicubic) to ``size`` pixels. A point ``p`` of the
source image maps to ``(p - (x0, y0)) / s`` with ``s = side / size``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .formats import LandmarkScheme


@dataclass(frozen=True)
class CropBox:
    """A square crop: top-left corner ``(x0, y0)`` and side in source pixels."""

    x0: float
    y0: float
    side: float

    def to_crop(self, points: np.ndarray, size: int) -> np.ndarray:
        """Source-image points -> crop pixels of a ``size``-pixel crop."""
        return (np.asarray(points, dtype=np.float64) - [self.x0, self.y0]) * (size / self.side)

    def to_source(self, points: np.ndarray, size: int) -> np.ndarray:
        """Crop pixels of a ``size``-pixel crop -> source-image points."""
        return np.asarray(points, dtype=np.float64) * (self.side / size) + [self.x0, self.y0]

    def expand(self, factor: float) -> CropBox:
        """The same centre with ``factor`` times the side."""
        c = self.side / 2
        return CropBox(self.x0 + c - c * factor, self.y0 + c - c * factor, self.side * factor)


def canonical_box(points: np.ndarray, margin: float = 1.3) -> CropBox:
    """Square box centred on the landmark box, side = ``margin`` x its larger side."""
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    side = margin * float((hi - lo).max())
    if not math.isfinite(side) or side <= 0:
        raise ValueError("landmarks span an empty box; cannot make a face crop")
    cx, cy = (lo + hi) / 2
    return CropBox(float(cx - side / 2), float(cy - side / 2), side)


def crop_image(img: Image.Image, box: CropBox, size: int) -> Image.Image:
    """Resample ``box`` of ``img`` to ``size`` x ``size`` RGB (bicubic; black outside the image)."""
    s = box.side / size
    src = img if img.mode == "RGB" else img.convert("RGB")  # no copy of a (large) RGB video frame per crop
    return src.transform(
        (size, size), Image.Transform.AFFINE, (s, 0, box.x0, 0, s, box.y0), resample=Image.Resampling.BICUBIC
    )


def canonical_crop(
    img: Image.Image, points: np.ndarray, size: int = 128, margin: float = 1.3, context: float = 1.0
) -> tuple[Image.Image, np.ndarray, CropBox]:
    """The canonical crop of ``img`` (optionally ``context`` times larger around the same centre, at the same
    pixel scale) and the landmarks in its pixels. Returns ``(crop, points, box)``; ``box`` is the crop's box."""
    box = canonical_box(points, margin)
    if context != 1.0:
        out = int(round(size * context))
        box = box.expand(out / size)
        size = out
    return crop_image(img, box, size), box.to_crop(points, size), box


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """PIL RGB -> ``(3, H, W)`` uint8 tensor."""
    arr = np.array(img.convert("RGB"), dtype=np.uint8, copy=True)
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def tensor_to_image(t: torch.Tensor) -> Image.Image:
    """``(3, H, W)`` float in [0, 1] or uint8 -> PIL RGB (rounded to 8 bits)."""
    if t.dtype != torch.uint8:
        t = torch.floor(t.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8)
    return Image.fromarray(t.permute(1, 2, 0).cpu().numpy())


# --- batched augmentation -------------------------------------------------------------------------------


def affine_matrices(
    n: int,
    in_size: int,
    out_size: int,
    generator: torch.Generator,
    rotation: float = 0.0,
    scale: tuple[float, float] = (1.0, 1.0),
    translation: float = 0.0,
    flip: float = 0.0,
    zoom: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random forward maps (``(n, 3, 3)``, source pixels -> output pixels) about the crops' centres, and the
    flip flags. ``zoom`` is the base output/input pixel ratio; rotation in degrees (uniform in +-rotation),
    scale uniform in ``scale`` (>1 enlarges the face), translation uniform in +-translation x out_size."""
    g = generator
    ang = (torch.rand(n, generator=g) * 2 - 1) * math.radians(rotation)
    sc = scale[0] + torch.rand(n, generator=g) * (scale[1] - scale[0])
    shift = (torch.rand(n, 2, generator=g) * 2 - 1) * translation * out_size
    flips = torch.rand(n, generator=g) < flip
    return compose_affine(in_size, out_size, ang, sc * zoom, shift, flips), flips


def compose_affine(
    in_size: int,
    out_size: int,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    flips: torch.Tensor,
) -> torch.Tensor:
    """``p_out = F(S R (p_in - c_in) + c_out + t)`` with ``F`` the horizontal flip where ``flips``."""
    n = angle.shape[0]
    angle, scale, shift = angle.double(), scale.double(), shift.double()
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    m = torch.zeros(n, 3, 3, dtype=torch.float64)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin, sin, cos
    m[:, 2, 2] = 1
    c_in, c_out = in_size / 2, out_size / 2
    m[:, :2, 2] = -(m[:, :2, :2] @ torch.full((n, 2, 1), c_in, dtype=torch.float64))[..., 0] + c_out + shift
    f = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    f[flips, 0, 0] = -1
    f[flips, 0, 2] = out_size
    return f @ m


def warp_images(images: torch.Tensor, forward: torch.Tensor, out_size: int, mode: str = "bicubic") -> torch.Tensor:
    """Resample ``(B, C, H, W)`` images (uint8 or float) through forward maps ``(B, 3, 3)`` (source -> output
    pixels) into float ``(B, C, out, out)``; zeros outside the source."""
    b, _, h, w = images.shape
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
    inv = torch.linalg.inv(forward.double())
    # normalised output coords -> output pixels -> source pixels -> normalised source coords
    n_out = torch.tensor([[out_size / 2, 0, out_size / 2], [0, out_size / 2, out_size / 2], [0, 0, 1]]).double()
    n_in = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]]).double()
    theta = (n_in @ inv @ n_out)[:, :2, :].float()
    grid = F.affine_grid(theta, [b, x.shape[1], out_size, out_size], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out.clamp(0, 1)


def warp_points(
    points: torch.Tensor, forward: torch.Tensor, flips: torch.Tensor, scheme: LandmarkScheme
) -> torch.Tensor:
    """Apply forward maps to ``(B, K, 2)`` points and re-index flipped samples with the scheme's mirror map."""
    ones = torch.ones(*points.shape[:-1], 1, dtype=points.dtype)
    out = (torch.cat([points, ones], -1) @ forward.to(points.dtype).transpose(1, 2))[..., :2]
    if flips.any():
        perm = torch.as_tensor(scheme.flip)
        out[flips] = out[flips][:, perm]
    return out


def colour_factors(n: int, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per-sample (brightness, contrast, saturation) factors in ``1 +- strength``, shape ``(n, 3)``."""
    return 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * strength


def apply_colour(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """Brightness, contrast and saturation ``factors`` ``(B, 3)`` on ``(B, 3, H, W)`` images in [0, 1]."""
    f = factors.view(-1, 3, 1, 1, 1)
    x = images * f[:, 0]
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * f[:, 1] + mean
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    x = (x - grey) * f[:, 2] + grey
    return x.clamp(0, 1)
