"""Dual Hallucination Learning Network (paper §3.1, Fig. 3, Eq. 1-2).

Two streams run side by side at the input resolution. Per stack ``t`` the landmark-heatmap stream produces the
pose representation ``P_t`` (an hourglass unit) and the face-hallucination stream a super-resolution module
output ``Q_t``. FUBlock1 (Eq. 1) turns ``P_t`` into attention for ``Q_t``; FUBlock2 (Eq. 2) feeds the result
back into ``P_t``. Heatmaps come from every stack (intermediate supervision) and the face from the last ``Q'``.

``ModelConfig.streams`` switches one stream off: ``shn`` is the stacked-hourglass baseline and ``fhs`` the
single face-hallucination stream of the paper's ablations; both run this same code without the fusion blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .hourglass import HeatmapHead, HourglassUnit, Residual, StackMerge, Stem
from .sr import SRModule, SRTail


class FUBlock1(nn.Module):
    """Eq. 1: ``Q' = Q + Q * sigmoid(RB(P))`` -- pose features as attention on the SR features."""

    def __init__(self, pose_channels: int, sr_channels: int) -> None:
        super().__init__()
        self.rb = Residual(pose_channels, sr_channels)

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return q + q * torch.sigmoid(self.rb(p))


class FUBlock2(nn.Module):
    """Eq. 2: ``P' = P + conv(P || Q')`` -- pose-attentional SR features fed back to the pose stream."""

    def __init__(self, pose_channels: int, sr_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(pose_channels + sr_channels, pose_channels, kernel_size, padding=kernel_size // 2)

    def forward(self, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return p + self.conv(torch.cat([p, q], dim=1))


@dataclass
class DHLNOutput:
    """``heatmaps``: one ``(B, K, S, S)`` tensor per stack (empty for FHS); ``face``: ``(B, 3, F, F)`` or None.
    ``background``: JASRNet's per-stage background channel ``(B, 1, S, S)`` (None for DHLN); ``points``: landmarks
    ``(B, K, 2)`` in face pixels when a module computes them directly (GHCU), used instead of decoding."""

    heatmaps: list[torch.Tensor]
    face: torch.Tensor | None
    background: list[torch.Tensor] | None = None
    points: torch.Tensor | None = None

    @property
    def final_heatmaps(self) -> torch.Tensor:
        return self.heatmaps[-1]


class DHLN(nn.Module):
    """DHLN, SHN or FHS depending on ``cfg.streams``.

    ``x``: ``(B, 3, S, S)`` in [0, 1], S = input_size. ``base``: optional ``(B, 3, F, F)`` bicubic upsampling of the
    LR face to the face size, added to the hallucinated residual (global residual); when omitted the input itself is
    upsampled. Passing it keeps the detail of LR faces larger than the input (64 px LR into a 32 px input)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, k, n = cfg.channels, cfg.num_landmarks, cfg.num_stacks
        fuse = cfg.has_landmarks and cfg.has_face
        if cfg.has_landmarks:
            self.stem = Stem(c)
            self.units = nn.ModuleList([HourglassUnit(cfg.depth, c) for _ in range(n)])
            self.heads = nn.ModuleList([HeatmapHead(c, k) for _ in range(n)])
            self.merges = nn.ModuleList([StackMerge(c, k) for _ in range(n - 1)])
        if cfg.has_face:
            q = cfg.sr_channels
            self.sr_stem = nn.Conv2d(3, q, 3, padding=1)
            self.sr_modules = nn.ModuleList([SRModule(q, cfg.sr_blocks) for _ in range(n)])
            self.sr_tail = SRTail(q, cfg.face_size // cfg.input_size)
        if fuse:
            self.fu1 = nn.ModuleList([FUBlock1(c, cfg.sr_channels) for _ in range(n)])
            self.fu2 = nn.ModuleList([FUBlock2(c, cfg.sr_channels, cfg.fusion_kernel) for _ in range(n)])
        self.fuse = fuse

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None, face: bool = True) -> DHLNOutput:
        """``face=False``: landmarks only -- the SR tail and the global residual, which only make the
        hallucinated face, are skipped (the SR modules still feed the fusion blocks); ``face`` is then None."""
        cfg = self.cfg
        heatmaps: list[torch.Tensor] = []
        feat = self.stem(x) if cfg.has_landmarks else None
        q = self.sr_stem(x) if cfg.has_face and (face or self.fuse) else None
        for t in range(cfg.num_stacks):
            p = self.units[t](feat) if feat is not None else None
            if q is not None:
                q = self.sr_modules[t](q)
            if self.fuse:
                q = self.fu1[t](p, q)
                p = self.fu2[t](p, q)
            if p is not None and feat is not None:
                h = self.heads[t](p)
                heatmaps.append(h)
                if t < cfg.num_stacks - 1:
                    feat = self.merges[t](feat, p, h)
        out = None
        if q is not None and face:
            out = self.sr_tail(q)
            if cfg.global_residual:
                if base is None:
                    base = F.interpolate(x, size=cfg.face_size, mode="bicubic", align_corners=False)
                out = out + base
        return DHLNOutput(heatmaps=heatmaps, face=out)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
