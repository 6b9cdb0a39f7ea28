"""JASRNet: joint super-resolution and alignment of tiny faces (Yin et al., AAAI 2020), from
``../shared/paper/jasrnet-spec.md`` §3 (written from the spec only: the official code carries no licence).

The LR face, bicubic-upsampled to the face size (128 px), goes through a shared encoder that halves the resolution
three times and fuses its levels (the ``a`` path of the spec's table), then deep residual blocks at 1/8 of the face
size. Two parallel heads read these features: the SR head (two residual blocks with a long skip from the stem, then
an x8 pixel-shuffle tail) and a 3-stage CPM landmark head whose heatmaps have one extra background channel.

With C = 128 and 32 deep blocks the trainable parameters are the spec's 19,885,778 exactly (tests/test_jasrnet.py);
the fixed mean/std layers are constant buffers here, not parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .dhln import DHLNOutput

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """All JASRNet convolutions: 3x3, padding 1, with bias (spec §3)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ResBlock(nn.Module):
    """RB: ``x + res_scale * conv(relu(conv(x)))``, no normalisation; ``relu_out`` makes it the spec's RB+."""

    def __init__(self, channels: int, res_scale: float = 1.0, relu_out: bool = True) -> None:
        super().__init__()
        self.conv1 = conv3(channels, channels)
        self.conv2 = conv3(channels, channels)
        self.res_scale = res_scale
        self.relu_out = relu_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.res_scale * self.conv2(F.relu(self.conv1(x)))
        return F.relu(y) if self.relu_out else y


def blocks(channels: int, n: int, **kw: float | bool) -> nn.Sequential:
    return nn.Sequential(*[ResBlock(channels, **kw) for _ in range(n)])  # type: ignore[arg-type]


class CPMStage(nn.Module):
    """Stages 2 and 3 of the CPM head: ``cat(features, previous heatmaps)`` -> conv, ReLU, 3 RB+, conv."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3(channels + out_channels, channels), nn.ReLU(), blocks(channels, 3), conv3(channels, out_channels)
        )

    def forward(self, feat: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        return self.body(torch.cat([feat, prev], dim=1))


class JASRNet(nn.Module):
    """``x``: ``(B, 3, F, F)`` in [0, 1], the LR face bicubic-upsampled to the face size F (``base`` is accepted
    for the DHLN interface and unused: the SR head has its own long skip). Returns a :class:`DHLNOutput` with the
    three stages' landmark heatmaps ``(B, K, F/8, F/8)``, their background channels and the SR face."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, k = cfg.jasr_channels, cfg.num_landmarks
        mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        self.head = conv3(3, c)
        # shared encoder: four levels (F, F/2, F/4, F/8) and the fusion path ``a`` of spec §3
        self.level1, self.level2, self.level3, self.level4 = blocks(c, 2), blocks(c, 3), blocks(c, 4), blocks(c, 2)
        self.fuse1a, self.fuse1b, self.fuse2 = conv3(c, c, 2), conv3(c, c, 2), conv3(c, c, 2)
        self.deep = blocks(c, cfg.jasr_blocks)
        # SR head: two RB (res_scale 0.1) and a conv, plus the long skip from the stem, then the x8 tail
        self.sr_body = nn.Sequential(blocks(c, 2, res_scale=0.1, relu_out=False), conv3(c, c))
        self.long = nn.Sequential(*[m for _ in range(3) for m in (conv3(c, c), nn.MaxPool2d(2))])
        self.sr_tail = nn.Sequential(*[m for _ in range(3) for m in (conv3(c, 4 * c), nn.PixelShuffle(2))], conv3(c, 3))
        # CPM landmark head: K landmark channels + 1 background channel per stage
        self.cpm_features = nn.Sequential(blocks(c, 2), conv3(c, c))
        self.stage1 = nn.Sequential(blocks(c, 2), conv3(c, k + 1))
        self.stages = nn.ModuleList([CPMStage(c, k + 1) for _ in range(2)])
        self.init_weights()

    def init_weights(self) -> None:
        """Spec §3: every conv weight ~ N(0, 0.01), biases 0 (``weights_init_cpm``)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stem features ``(B, C, F, F)`` and fused deep features ``(B, C, F/8, F/8)``."""
        x0 = self.head((x - self.mean) / self.std)
        a = self.level1(x0)
        b = self.level2(F.max_pool2d(a, 2))
        a = self.fuse1b(self.fuse1a(a) + b)
        c = self.level3(F.max_pool2d(b, 2))
        a = self.fuse2(a + c)
        c = self.level4(F.max_pool2d(c, 2))
        return x0, self.deep(c) + a

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None, face: bool = True) -> DHLNOutput:
        """``face=False``: landmarks only -- the SR head (``sr_body``, ``long``, ``sr_tail``) is skipped."""
        x0, feat = self.encode(x)
        # the output layer computes (y + mean) / std, not the inverse of the input layer: replicated (spec §1)
        sr = (self.sr_tail(self.sr_body(feat) + self.long(x0)) + self.mean) / self.std if face else None
        f = self.cpm_features(feat)
        h = self.stage1(f)
        out = [h]
        for stage in self.stages:
            h = stage(f, h)
            out.append(h)
        k = self.cfg.num_landmarks
        return DHLNOutput(heatmaps=[o[:, :k] for o in out], face=sr, background=[o[:, k:] for o in out])
