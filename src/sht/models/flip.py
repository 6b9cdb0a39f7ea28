"""Flip test: the network run on a face and on its mirror image, the two predictions averaged.

A test-time ensemble (not in the SHT paper; the flip test of Newell et al.'s hourglass and the "+" self-ensemble
of super-resolution): the mirrored heatmaps are flipped back and their landmark channels swapped left/right by
the landmark scheme's permutation, the mirrored hallucinated face is flipped back, and each is averaged with the
direct prediction. Twice the work per face; what it gains is measured in benchmarks/RESULTS.md ("Flip test").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .dhln import DHLNOutput


class FlipTest(nn.Module):
    """``backbone`` (a DHLN: ``forward(x, base, face)``) with its flip-averaged output. ``flip``: the horizontal
    permutation of the landmarks (``LandmarkScheme.flip``)."""

    def __init__(self, backbone: nn.Module, flip: Sequence[int]) -> None:
        super().__init__()
        if sorted(flip) != list(range(len(flip))):
            raise ValueError("flip must be a permutation of the landmark indices")
        self.backbone = backbone
        self.cfg = backbone.cfg
        self.register_buffer("perm", torch.as_tensor(list(flip), dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None, face: bool = True) -> DHLNOutput:
        n = x.shape[0]
        both = torch.cat([x, x.flip(-1)])
        out = self.backbone(both, None if base is None else torch.cat([base, base.flip(-1)]), face=face)
        heatmaps = [(h[:n] + h[n:].flip(-1)[:, self.perm]) / 2 for h in out.heatmaps]
        hallucinated = None if out.face is None else (out.face[:n] + out.face[n:].flip(-1)) / 2
        return DHLNOutput(heatmaps=heatmaps, face=hallucinated)
