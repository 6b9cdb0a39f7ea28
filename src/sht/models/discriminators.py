"""PatchGAN discriminators of FPTN's adversarial loss (paper Eq. 6, following PATN, ref. [53]).

``D_A`` (appearance) judges ``I_con || I`` and ``D_S`` (shape) judges ``H_tar || I`` for ``I`` = ``I_tar`` (real)
or ``I_ger`` (fake). Both return a map of patch logits (no sigmoid): use them with a logits-based GAN loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..config import FPTNConfig
from .fptn import make_norm


class PatchDiscriminator(nn.Module):
    """conv4x4/2 + LeakyReLU, (layers - 1) x [conv4x4/2, norm, LeakyReLU], conv4x4/1 + norm + LeakyReLU,
    conv4x4/1 -> 1 channel of logits. Widths double per layer up to ``8 * channels``; spectral norm optional."""

    def __init__(
        self, in_channels: int, channels: int = 64, layers: int = 3, norm: str = "instance", spectral: bool = True
    ) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        make_norm(norm, 1)  # validates the name
        self.in_channels = in_channels
        self.layers = layers
        sn = _spectral_norm if spectral else (lambda m: m)
        bias = norm == "none"
        mods: list[nn.Module] = [sn(nn.Conv2d(in_channels, channels, 4, 2, 1)), nn.LeakyReLU(0.2, inplace=True)]
        width = channels
        for i in range(1, layers):
            nxt = channels * min(2**i, 8)
            mods += [sn(nn.Conv2d(width, nxt, 4, 2, 1, bias=bias)), make_norm(norm, nxt), nn.LeakyReLU(0.2, True)]
            width = nxt
        nxt = channels * min(2**layers, 8)
        mods += [sn(nn.Conv2d(width, nxt, 4, 1, 1, bias=bias)), make_norm(norm, nxt), nn.LeakyReLU(0.2, True)]
        mods.append(sn(nn.Conv2d(nxt, 1, 4, 1, 1)))
        self.body = nn.Sequential(*mods)

    def output_size(self, size: int) -> int:
        """Side of the logit map for a ``size`` x ``size`` input."""
        for _ in range(self.layers):
            size = (size + 2 - 4) // 2 + 1
        return size - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class AppearanceDiscriminator(PatchDiscriminator):
    """D_A of Eq. 6: logits for ``I_con || I`` (6 channels)."""

    def __init__(self, channels: int = 64, layers: int = 3, norm: str = "instance", spectral: bool = True) -> None:
        super().__init__(6, channels, layers, norm, spectral)

    @classmethod
    def from_config(cls, cfg: FPTNConfig) -> AppearanceDiscriminator:
        return cls(cfg.disc_channels, cfg.disc_layers, cfg.disc_norm, cfg.spectral_norm)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``a`` = condition face ``I_con``, ``b`` = real or generated face, both ``(B, 3, F, F)``."""
        return self.body(torch.cat([a, b], dim=1))


class ShapeDiscriminator(PatchDiscriminator):
    """D_S of Eq. 6: logits for ``H_tar || I`` (K + 3 channels); heatmaps are resized bilinearly to the image."""

    def __init__(
        self, num_landmarks: int, channels: int = 64, layers: int = 3, norm: str = "instance", spectral: bool = True
    ) -> None:
        super().__init__(num_landmarks + 3, channels, layers, norm, spectral)
        self.num_landmarks = num_landmarks

    @classmethod
    def from_config(cls, cfg: FPTNConfig, num_landmarks: int) -> ShapeDiscriminator:
        return cls(num_landmarks, cfg.disc_channels, cfg.disc_layers, cfg.disc_norm, cfg.spectral_norm)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``a`` = target heatmaps ``H_tar`` ``(B, K, h, w)``, ``b`` = real or generated face ``(B, 3, F, F)``."""
        if a.shape[-2:] != b.shape[-2:]:
            a = F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(torch.cat([a, b], dim=1))
