"""Stacked hourglass network (Newell et al. 2016; the SHN baseline of the paper, ref. [48]).

The landmark-heatmap stream of DHLN (paper Fig. 3) is built from the pieces here: a stem at the input
resolution (heatmaps have the input's size, 64x64 in the paper), then per stack an hourglass unit producing the
facial pose representation ``P_t``, a normalised heatmap head and the merge back into the next stack.
"""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    """Pre-activation bottleneck residual block (BN-ReLU-conv x3), with a 1x1 projection when widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        mid = max(out_channels // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, out_channels, 1),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """One recursive hourglass of ``depth`` max-pool/upsample levels with a residual per branch."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.up1 = Residual(channels, channels)
        self.pool = nn.MaxPool2d(2, 2)
        self.low1 = Residual(channels, channels)
        self.low2: nn.Module = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.low3 = Residual(channels, channels)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(self.pool(x)))))


class Stem(nn.Module):
    """Input stem at full input resolution: 7x7 conv then residuals widening to ``channels``."""

    def __init__(self, channels: int, in_channels: int = 3) -> None:
        super().__init__()
        c4, c2 = max(channels // 4, 8), max(channels // 2, 8)
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, c4, 7, padding=3, bias=False),
            nn.BatchNorm2d(c4),
            nn.ReLU(inplace=True),
            Residual(c4, c2),
            Residual(c2, c2),
            Residual(c2, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class HourglassUnit(nn.Module):
    """Hourglass + residual + 1x1 conv-BN-ReLU: the pose representation ``P_t`` of paper Eq. 1-2."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.hourglass = Hourglass(depth, channels)
        self.residual = Residual(channels, channels)
        self.linear = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.residual(self.hourglass(x)))


class HeatmapHead(nn.Module):
    """Normalised heatmap head: BN-ReLU-conv1x1-BN-ReLU-conv1x1 to one heatmap per landmark."""

    def __init__(self, channels: int, num_landmarks: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, num_landmarks, 1),
        )

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        return self.body(p)


class StackMerge(nn.Module):
    """Intermediate supervision merge: ``x_{t+1} = x_t + conv(P_t) + conv(H_t)`` (Newell et al.)."""

    def __init__(self, channels: int, num_landmarks: int) -> None:
        super().__init__()
        self.features = nn.Conv2d(channels, channels, 1)
        self.heatmaps = nn.Conv2d(num_landmarks, channels, 1)

    def forward(self, x: torch.Tensor, p: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return x + self.features(p) + self.heatmaps(h)
