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
from ..data.heatmaps import HeatmapCodec

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


def similarity_fit(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity ``(B, 2, 3)`` mapping points ``src`` ``(B, K, 2)`` onto ``dst`` (Umeyama without
    reflection, closed form in complex numbers); differentiable in both point sets."""
    ms, md = src.mean(1, keepdim=True), dst.mean(1, keepdim=True)
    a, b = src - ms, dst - md
    za = torch.complex(a[..., 0], a[..., 1])
    zb = torch.complex(b[..., 0], b[..., 1])
    z = (zb * za.conj()).sum(1) / (za.abs() ** 2).sum(1).clamp_min(1e-8)  # scale * exp(i angle)
    c, s_ = z.real, z.imag
    rot = torch.stack([torch.stack([c, -s_], -1), torch.stack([s_, c], -1)], -2)  # (B, 2, 2)
    shift = md[:, 0] - (rot @ ms[:, 0, :, None])[..., 0]
    return torch.cat([rot, shift[..., None]], -1)


def landmark_warp(image: torch.Tensor, cond: torch.Tensor, target: torch.Tensor, radius: float) -> torch.Tensor:
    """Resample ``image`` ``(B, 3, F, F)`` (whose landmarks are ``cond`` ``(B, K, 2)``, pixels) so that they land
    on ``target``: for each output pixel ``x`` the source is ``T x + sum_i w_i(x) r_i / (sum_i w_i(x) + 1)``
    with ``T`` the least-squares similarity target -> cond, ``r_i = cond_i - T target_i`` the residuals and
    ``w_i(x) = exp(-|x - target_i|^2 / (2 (radius F)^2))``; far from every landmark the warp is ``T`` alone.
    Differentiable in the image and in both point sets."""
    b, _, h, w = image.shape
    t = similarity_fit(target, cond)
    res = cond - (target @ t[:, :, :2].transpose(1, 2) + t[:, None, :, 2])  # (B, K, 2)
    ys = torch.arange(h, device=image.device, dtype=image.dtype) + 0.5
    xs = torch.arange(w, device=image.device, dtype=image.dtype) + 0.5
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    pix = torch.stack([gx, gy], -1).reshape(1, -1, 2)  # (1, HW, 2)
    base = pix @ t[:, :, :2].transpose(1, 2) + t[:, None, :, 2]  # (B, HW, 2)
    rho = radius * w
    d2 = ((pix[:, :, None, :] - target[:, None, :, :]) ** 2).sum(-1)  # (B, HW, K)
    wt = torch.exp(-d2 / (2 * rho * rho))
    src = base + (wt @ res) / (wt.sum(-1, keepdim=True) + 1.0)
    grid = (2 * src / torch.tensor([w, h], device=image.device, dtype=image.dtype) - 1).reshape(b, h, w, 2)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _encoder(in_ch: int, widths: list[int], norm: str) -> nn.Sequential:
    """conv7x7 (in -> widths[0]) then one stride-2 conv3x3 per further width."""
    layers = [_conv_norm_relu(in_ch, widths[0], 7, 1, norm)]
    layers += [_conv_norm_relu(a, b, 3, 2, norm) for a, b in zip(widths[:-1], widths[1:], strict=True)]
    return nn.Sequential(*layers)


class FPTN(nn.Module):
    """Generator G of Eq. 5: ``forward(I_con, H_con, H_tar) -> I_ger``.

    ``image``: ``(B, 3, F, F)`` in [0, 1] with F = ``face_size``; ``cond_heatmaps``/``target_heatmaps``:
    ``(B, K, h, w)`` at any resolution (resized bilinearly to the bottleneck resolution ``F / 2**downsample`` and
    encoded there). Returns ``(B, 3, F, F)`` in [0, 1]. With ``cfg.warp`` > 0 the encoder also sees the condition face
    warped to the target landmarks (:meth:`warped`)."""

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
        self.image_encoder = _encoder(6 if cfg.warp > 0 else 3, widths, cfg.norm)
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

    def warped(self, image: torch.Tensor, cond_heatmaps: torch.Tensor, target_heatmaps: torch.Tensor) -> torch.Tensor:
        """The condition face moved to the target pose by :func:`landmark_warp` (landmarks read from the heatmaps
        by their centre of mass, exact for rendered Gaussians)."""
        codec = HeatmapCodec(self.face_size, cond_heatmaps.shape[-1], 1.0)
        pc, pt = codec.soft_argmax(cond_heatmaps), codec.soft_argmax(target_heatmaps)
        return landmark_warp(image, pc, pt, self.cfg.warp)

    def forward(self, image: torch.Tensor, cond_heatmaps: torch.Tensor, target_heatmaps: torch.Tensor) -> torch.Tensor:
        f = self.face_size
        if image.dim() != 4 or tuple(image.shape[1:]) != (3, f, f):
            raise ValueError(f"image must be (B, 3, {f}, {f}), got {tuple(image.shape)}")
        pose = torch.cat(
            [self._resize(cond_heatmaps, "cond_heatmaps"), self._resize(target_heatmaps, "target_heatmaps")], dim=1
        )
        if self.cfg.warp > 0:
            x = torch.cat([self.warped(image, cond_heatmaps, target_heatmaps), image], dim=1)
        else:
            x = image
        x = self.image_encoder(x)
        p = self.pose_encoder(pose)
        for block in self.blocks:
            x, p = block(x, p)
        return self.decoder(x)
