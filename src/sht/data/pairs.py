"""Pairs of views of the same face for supervision by transfer (paper §3.3, §4.1, Eq. 9).

Images: the two views of face ``i`` differ by a rotation and a box scale drawn from Gaussians and clipped to
+-30 degrees and [0.8, 1.2]. Videos: the two views are two frames of the same clip. Within a pair the flip, the
colour jitter and the LR size are shared, so that one view's face can be transferred to the other's pose.
A pair batch of ``n`` pairs is one :class:`~sht.data.dataset.Batch` of ``2n`` faces: views ``j`` first, then
views ``k`` in the same order.
"""

from __future__ import annotations

import math

import torch

from ..config import PairsConfig
from .dataset import Batch, BatchBuilder
from .formats import DataError
from .transforms import compose_affine


def clipped_normal(
    n: int, sigma: float, low: float, high: float, generator: torch.Generator, mean: float = 0.0
) -> torch.Tensor:
    """``n`` draws of ``N(mean, sigma)`` clipped to ``[low, high]``."""
    return (mean + sigma * torch.randn(n, generator=generator)).clamp(low, high)


class PairBuilder:
    """Makes pair batches from a :class:`BatchBuilder`'s faces (labeled or not; still images or video clips)."""

    def __init__(self, builder: BatchBuilder, cfg: PairsConfig, video: bool = False) -> None:
        self.builder = builder
        self.cfg = cfg
        self.video = video
        faces = builder.faces
        if not video:
            self.anchors = torch.arange(len(faces))
            return
        if faces.groups is None:
            raise DataError("video pairs need faces grouped by clip (FaceSet.groups)")
        groups = faces.groups.long()
        self._count = torch.bincount(groups)
        self._start = torch.cumsum(self._count, 0) - self._count
        self._order = torch.argsort(groups, stable=True)
        self._rank = torch.empty_like(groups)
        self._rank[self._order] = torch.arange(len(groups)) - self._start[groups[self._order]]
        self.anchors = (self._count[groups] >= 2).nonzero()[:, 0]
        if len(self.anchors) == 0:
            raise DataError("no video clip has two or more frames")

    def __len__(self) -> int:
        return len(self.anchors)

    def partners(self, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A uniformly random other frame of the same clip (videos), or the face itself (images)."""
        if not self.video:
            return index
        assert self.builder.faces.groups is not None
        g = self.builder.faces.groups[index].long()
        count = self._count[g]
        step = 1 + (torch.rand(len(index), generator=generator) * (count - 1)).floor().long()
        return self._order[self._start[g] + (self._rank[index] + step) % count]

    def view_geometry(self, n: int, flips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Forward maps of one view per pair: clipped-Gaussian rotation and scale for images, a small shift only
        for video frames (their pose already differs)."""
        c = self.cfg
        faces = self.builder.faces
        if self.video:
            angle, scale = torch.zeros(n), torch.ones(n)
        else:
            angle = clipped_normal(n, c.rotation_sigma, -c.rotation_max, c.rotation_max, generator) * math.pi / 180
            scale = clipped_normal(n, c.scale_sigma, c.scale_min, c.scale_max, generator, mean=1.0)
        shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * c.translation * faces.size
        return compose_affine(faces.crop_size, faces.size, angle, scale, shift, flips)

    def build(self, index: torch.Tensor, generator: torch.Generator) -> Batch:
        """``2n`` faces for ``n`` anchor indices: views ``j`` then views ``k``."""
        n = len(index)
        b = self.builder
        flips = torch.rand(n, generator=generator) < (b.augment.flip if b.augment is not None else 0.0)
        sizes = b.sizes(n, generator)
        colour = b.colour(n, generator)
        other = self.partners(index, generator)
        fwd = torch.cat([self.view_geometry(n, flips, generator), self.view_geometry(n, flips, generator)])
        return b.render(
            torch.cat([index, other]),
            fwd,
            torch.cat([flips, flips]),
            torch.cat([sizes, sizes]),
            None if colour is None else torch.cat([colour, colour]),
        )


def view_transform(batch: Batch) -> torch.Tensor:
    """``(n, 3, 3)`` maps from view ``j``'s HR pixels to view ``k``'s for a pair batch of still images (both views
    are warps of one crop: ``T = A_k A_j^-1``). Video pairs are two frames: no known transform relates them."""
    if batch.transform is None:
        raise DataError("this batch carries no view transforms")
    n = batch.transform.shape[0] // 2
    fwd = batch.transform.double()
    return fwd[n:] @ torch.linalg.inv(fwd[:n])
