"""Facial Pose Transfer Network generator (paper §3.2, Fig. 5, Eq. 5).

FPTN maps ``{I_con, H_con, H_tar}`` to ``I_ger``, a face that should look like ``I_tar``. Its backbone is the
Pose-Attentional Transfer Block (PATB) of Zhu et al. (CVPR 2019, the paper's ref. [53]): an image code and a pose
code (both heatmaps) are encoded to a low resolution, a chain of PATBs lets the pose code gate residual updates of
the image code, and a decoder turns the final image code back into a face. Everything is differentiable in the
heatmaps too, which is what lets FPTN supervise the landmark stream of DHLN in SHT (§3.3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import FPTNConfig

NORMS = ("batch", "instance", "none")


def make_norm(kind: str, channels: int) -> nn.Module:
    """``batch`` -> BatchNorm2d, ``instance`` -> affine InstanceNorm2d without running stats, ``none`` -> Identity."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True, track_running_stats=False)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {kind!r}")


def _conv_norm_relu(in_ch: int, out_ch: int, kernel: int, stride: int, norm: str) -> nn.Sequential:
    """conv (bias only when no norm follows) - norm - ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=norm == "none"),
        make_norm(norm, out_ch),
        nn.ReLU(inplace=True),
    )


class PATBlock(nn.Module):
    """Pose-Attentional Transfer Block: ``I' = I + conv(I) * sigmoid(conv(P))``, ``P' = conv(P) || I'``.

    Image path conv3x3-norm-ReLU-conv3x3-norm (channels -> channels); pose path conv3x3-norm-ReLU-conv3x3
    (pose_in -> channels). The pose output has ``2 * channels`` channels, the ``pose_in`` of the next block."""

    def __init__(self, channels: int, pose_in: int, norm: str) -> None:
        super().__init__()
        self.channels = channels
        self.pose_in = pose_in
        self.image_path = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=norm == "none"),
            make_norm(norm, channels),
        )
        self.pose_path = nn.Sequential(
            nn.Conv2d(pose_in, channels, 3, padding=1, bias=norm == "none"),
            make_norm(norm, channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, image: torch.Tensor, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pose_feat = self.pose_path(pose)
        attention = torch.sigmoid(pose_feat)
        image_out = image + self.image_path(image) * attention
        return image_out, torch.cat([pose_feat, image_out], dim=1)


def _encoder(in_ch: int, widths: list[int], norm: str) -> nn.Sequential:
    """conv7x7 (in -> widths[0]) then one stride-2 conv3x3 per further width."""
    layers = [_conv_norm_relu(in_ch, widths[0], 7, 1, norm)]
    layers += [_conv_norm_relu(a, b, 3, 2, norm) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return nn.Sequential(*layers)


class FPTN(nn.Module):
    """Generator G of Eq. 5: ``forward(I_con, H_con, H_tar) -> I_ger``.

    ``image``: ``(B, 3, F, F)`` in [0, 1] with F = ``face_size``; ``cond_heatmaps``/``target_heatmaps``:
    ``(B, K, h, w)`` at any resolution (resized bilinearly to the bottleneck resolution ``F / 2**downsample`` and
    encoded there). Returns ``(B, 3, F, F)`` in [0, 1]."""

    def __init__(self, cfg: FPTNConfig, num_landmarks: int, face_size: int) -> None:
        super().__init__()
        if cfg.norm not in NORMS:
            raise ValueError(f"fptn.norm must be one of {', '.join(NORMS)}, got {cfg.norm!r}")
        if face_size % (2**cfg.downsample) != 0:
            raise ValueError(f"face_size={face_size} must be divisible by 2**fptn.downsample={2**cfg.downsample}")
        self.cfg = cfg
        self.num_landmarks = num_landmarks
        self.face_size = face_size
        widths = [min(cfg.channels * 2**i, max(cfg.max_channels, cfg.channels)) for i in range(cfg.downsample + 1)]
        self.widths = widths
        c = widths[-1]
        self.image_encoder = _encoder(3, widths, cfg.norm)
        # heatmaps are smooth and already low resolution: encode them at the bottleneck resolution
        self.pose_encoder = nn.Sequential(
            _conv_norm_relu(2 * num_landmarks, c, 3, 1, cfg.norm), _conv_norm_relu(c, c, 3, 1, cfg.norm)
        )
        self.bottom = face_size // 2**cfg.downsample
        self.blocks = nn.ModuleList([PATBlock(c, c if i == 0 else 2 * c, cfg.norm) for i in range(cfg.blocks)])
        up: list[nn.Module] = []
        for a, b in zip(widths[::-1][:-1], widths[::-1][1:], strict=True):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), *_conv_norm_relu(a, b, 3, 1, cfg.norm)]
        self.decoder = nn.Sequential(*up, nn.Conv2d(widths[0], 3, 7, padding=3), nn.Sigmoid())

    def _resize(self, heatmaps: torch.Tensor, name: str) -> torch.Tensor:
        if heatmaps.dim() != 4 or heatmaps.shape[1] != self.num_landmarks:
            raise ValueError(f"{name} must be (B, {self.num_landmarks}, h, w), got {tuple(heatmaps.shape)}")
        size = (self.bottom, self.bottom)
        if tuple(heatmaps.shape[-2:]) == size:
            return heatmaps
        return F.interpolate(heatmaps, size=size, mode="bilinear", align_corners=False, antialias=True)

    def forward(self, image: torch.Tensor, cond_heatmaps: torch.Tensor, target_heatmaps: torch.Tensor) -> torch.Tensor:
        f = self.face_size
        if image.dim() != 4 or tuple(image.shape[1:]) != (3, f, f):
            raise ValueError(f"image must be (B, 3, {f}, {f}), got {tuple(image.shape)}")
        pose = torch.cat(
            [self._resize(cond_heatmaps, "cond_heatmaps"), self._resize(target_heatmaps, "target_heatmaps")], dim=1
        )
        x = self.image_encoder(image)
        p = self.pose_encoder(pose)
        for block in self.blocks:
            x, p = block(x, p)
        return self.decoder(x)
