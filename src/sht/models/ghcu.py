"""Global Heatmap Correction Unit (Liu et al., CVPR 2019; semantic-alignment-spec §7, Table 1).

Six stride-2 convolutions read all final heatmaps at once, then FC 256 and FC 2N give a correction of every
landmark, so an unconfident or outlier point can be moved by the global face shape that the other heatmaps show.

Choices where the spec has none (NOT FOUND there), documented with the results in benchmarks/RESULTS.md:
- input: the K final heatmaps, bilinearly resized to ``input_size`` (``ghcu.input_size``, 32 by default: the spec's
  256 would cost 64x more on CPU; the six convolutions then end at 1 x 1 x 16 instead of 4 x 4 x 16);
- ReLU after every convolution and after FC1, no normalisation;
- output: an offset added to the points decoded from the heatmaps (coordinates as fractions of the heatmap side),
  FC2 initialised to zero, so an untrained GHCU is the identity and training only learns corrections.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..data.heatmaps import HeatmapCodec
from .dhln import DHLNOutput

TABLE_1 = ((5, 64), (3, 64), (3, 32), (3, 32), (3, 16), (3, 16))  # (kernel, channels), all stride 2


class GHCU(nn.Module):
    """``(heatmaps (B, K, S, S), points (B, K, 2) as fractions of the heatmap side)`` -> corrected points."""

    def __init__(self, num_landmarks: int, input_size: int = 32) -> None:
        super().__init__()
        self.num_landmarks, self.input_size = num_landmarks, input_size
        layers: list[nn.Module] = []
        cin, side = num_landmarks, input_size
        for k, c in TABLE_1:
            layers += [nn.Conv2d(cin, c, k, stride=2, padding=k // 2), nn.ReLU()]
            cin, side = c, (side + 1) // 2
        self.convs = nn.Sequential(*layers)
        self.fc1 = nn.Linear(cin * side * side, 256)
        self.fc2 = nn.Linear(256, 2 * num_landmarks)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, heatmaps: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        x = heatmaps.float()
        if x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        delta = self.fc2(F.relu(self.fc1(self.convs(x).flatten(1))))
        return points + delta.view(-1, self.num_landmarks, 2)


class CorrectedModel(nn.Module):
    """A landmark network followed by GHCU: its output carries ``points`` (face pixels) from the corrected
    decoding, which inference and evaluation use instead of decoding the heatmaps."""

    def __init__(self, backbone: nn.Module, ghcu: GHCU, codec: HeatmapCodec) -> None:
        super().__init__()
        self.backbone, self.ghcu, self.codec = backbone, ghcu, codec
        self.cfg = backbone.cfg

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None, face: bool = True) -> DHLNOutput:
        return self.correct(self.backbone(x, base, face=face))

    def correct(self, out: DHLNOutput) -> DHLNOutput:
        """Set ``out.points`` from its final heatmaps (also for heatmaps computed elsewhere, e.g. ONNX Runtime)."""
        hm = out.final_heatmaps
        side = float(self.codec.image_size)
        pts = self.codec.decode(hm)[0] / side
        out.points = self.ghcu(hm, pts) * side
        return out
