"""Face hallucination stream of DHLN (paper §3.1, Fig. 3): SRBlocks, SR modules and the upsampling tail.

A super-resolution module is ``blocks_per_module`` SRBlocks (4 in the paper, 64 channels) working at the
network's input resolution; its output is ``Q_t``. The tail upsamples the last ``Q'_T`` to the face size with
pixel shuffles (x2 for 64 -> 128, x4 for SHT-M's 64 -> 256) and adds the bicubic-upsampled input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class SRBlock(nn.Module):
    """Residual SR block without normalisation (conv-ReLU-conv + identity), as in EDSR/SRResNet."""

    def __init__(self, channels: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x), inplace=True))


class SRModule(nn.Module):
    """One super-resolution module: a chain of SRBlocks with a skip around the chain."""

    def __init__(self, channels: int, num_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[SRBlock(channels) for _ in range(num_blocks)])

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q + self.blocks(q)


class SRTail(nn.Module):
    """Upsample features to the face size with x2 pixel shuffles and PReLU (halving the width at each step, at least 8
    channels, so the cost at the face resolution stays small), then project to RGB."""

    def __init__(self, channels: int, scale: int, out_channels: int = 3) -> None:
        super().__init__()
        if scale < 1 or (scale & (scale - 1)) != 0:
            raise ValueError(f"face_size / input_size must be a power of two, got {scale}")
        layers: list[nn.Module] = []
        c = channels
        for _ in range(int(math.log2(scale))):
            nxt = max(c // 2, 8)
            layers += [nn.Conv2d(c, 4 * nxt, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(nxt)]
            c = nxt
        layers.append(nn.Conv2d(c, out_channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return self.body(q)
