"""Synthetic annotation noise for the noisy-label setting of Semantic Alignment (issue 13).

The weakly defined 68-point landmarks -- the jaw contour (0-16) and the nose bridge (27-30) -- have a position
*along* their contour that annotators do not agree on. Each is moved along its contour's direction (the unit
tangent ``p[i+1] - p[i-1]``, one-sided at the chain ends) by ``eps * fraction * IOD`` with ``eps ~ N(0, 1)`` and
IOD the distance between the outer eye corners 36 and 45 (the NME_io normaliser). The noise is drawn once from a
seeded generator when the data are loaded, so each face keeps the same noisy labels in every epoch.
"""

from __future__ import annotations

import dataclasses

import torch

from .dataset import FaceSet
from .formats import DataError

WEAK_CHAINS_68 = (tuple(range(0, 17)), tuple(range(27, 31)))  # jaw contour, nose bridge
EYE_CORNERS_68 = (36, 45)


def weak_points(num_points: int = 68) -> list[int]:
    """Indices of the weakly defined points that receive noise (68-point scheme only)."""
    if num_points != 68:
        raise DataError(f"label noise is defined for the 68-point scheme, got {num_points} points")
    return [i for chain in WEAK_CHAINS_68 for i in chain]


def contour_tangents(points: torch.Tensor) -> torch.Tensor:
    """``(N, 68, 2)`` -> unit tangents ``(N, 68, 2)`` of the weak chains (zero at every other point)."""
    weak_points(points.shape[1])
    out = torch.zeros_like(points, dtype=torch.float64)
    p = points.double()
    for chain in WEAK_CHAINS_68:
        c = list(chain)
        nxt = p[:, c[1:] + c[-1:]]
        prv = p[:, c[:1] + c[:-1]]
        t = nxt - prv
        out[:, c] = t / t.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    return out


def contour_noise(points: torch.Tensor, fraction: float, seed: int = 0) -> torch.Tensor:
    """``points`` ``(N, 68, 2)`` with the weak points moved along their contour by Gaussian noise of standard
    deviation ``fraction`` x the inter-ocular distance (a new tensor of the same dtype; other points untouched)."""
    if fraction < 0:
        raise ValueError(f"label noise must be >= 0, got {fraction}")
    idx = weak_points(points.shape[1])
    if fraction == 0:
        return points.clone()
    p = points.double()
    iod = (p[:, EYE_CORNERS_68[0]] - p[:, EYE_CORNERS_68[1]]).norm(dim=-1)  # (N,)
    g = torch.Generator().manual_seed(seed)
    eps = torch.randn(points.shape[0], len(idx), generator=g, dtype=torch.float64)
    tangent = contour_tangents(points)[:, idx]
    moved = p.clone()
    moved[:, idx] = p[:, idx] + (eps * fraction * iod[:, None])[..., None] * tangent
    return moved.to(points.dtype)


def with_label_noise(faces: FaceSet, fraction: float, seed: int = 0) -> FaceSet:
    """A copy of a labeled face set whose landmarks carry :func:`contour_noise` (images shared, not copied)."""
    if faces.points is None:
        raise DataError("label noise needs a labeled face set")
    return dataclasses.replace(faces, points=contour_noise(faces.points, fraction, seed))
