"""Objective functions of the paper, one function per equation.

- Eq. 3  :func:`gradient_map` -- per-channel central-difference gradient magnitude ``G(I)``.
- Eq. 4  :func:`dhln_loss` -- ``gamma_1 ||H - H*||^2 + gamma_2 ||I_SR - I_HR||_1 + gamma_3 ||G(I_SR) - G(I_HR)||_1``
  (with ``gamma_1 = 0`` it is Eq. 10's label-free ``L'_DH``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import LossConfig
from .data.heatmaps import HeatmapCodec


def gradient_map(img: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Eq. 3: ``sqrt(I_x^2 + I_y^2)`` per channel, ``I_x = I(x+1, y) - I(x-1, y)`` (replicated borders)."""
    p = F.pad(img, (1, 1, 1, 1), mode="replicate")
    ix = p[..., 1:-1, 2:] - p[..., 1:-1, :-2]
    iy = p[..., 2:, 1:-1] - p[..., :-2, 1:-1]
    return torch.sqrt(ix * ix + iy * iy + eps)


def gradient_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """``||G(I_SR) - G(I_HR)||_1`` (mean over pixels and channels)."""
    return F.l1_loss(gradient_map(sr), gradient_map(hr))


def pixel_loss(sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """``||I_SR - I_HR||_1`` (mean)."""
    return F.l1_loss(sr, hr)


def heatmap_mse(pred: torch.Tensor, target: torch.Tensor, foreground_weight: float = 0.0) -> torch.Tensor:
    """``||H - H*||_2^2`` (mean). With ``foreground_weight = w > 0`` pixels in the dilated foreground of the
    target weigh ``1 + w`` (the weighted loss map of Adaptive Wing, Wang et al. 2019)."""
    err = (pred.float() - target) ** 2
    if foreground_weight > 0:
        fg = (F.max_pool2d(target, 3, stride=1, padding=1) > 0.2).to(err.dtype)
        err = err * (1 + foreground_weight * fg)
    return err.mean()


def coordinate_l1(pred: torch.Tensor, points: torch.Tensor, codec: HeatmapCodec) -> torch.Tensor:
    """L1 between the soft-argmax of ``pred`` and the true points, in heatmap pixels."""
    return (codec.soft_argmax(pred) - points).abs().mean() * codec.scale


@dataclass
class LossParts:
    """The total and its named parts (detached tensors, for logging without a device sync per step)."""

    total: torch.Tensor
    parts: dict[str, torch.Tensor]


def dhln_loss(
    heatmaps: list[torch.Tensor],
    face: torch.Tensor | None,
    target_heatmaps: torch.Tensor | None,
    hr: torch.Tensor | None,
    cfg: LossConfig,
    codec: HeatmapCodec | None = None,
    points: torch.Tensor | None = None,
    labeled: bool = True,
) -> LossParts:
    """Eq. 4 summed over stacks (intermediate supervision). ``labeled=False`` drops every landmark term
    (``gamma_1 = 0``, Eq. 10) and never reads the targets."""
    total = torch.zeros((), device=(face if face is not None else heatmaps[0]).device)
    parts: dict[str, torch.Tensor] = {}
    if labeled and heatmaps and cfg.heatmap > 0:
        assert target_heatmaps is not None
        hm = sum(heatmap_mse(h, target_heatmaps, cfg.foreground_weight) for h in heatmaps)
        total = total + cfg.heatmap * hm
        parts["heatmap"] = hm.detach()
        if cfg.coordinate > 0:
            assert codec is not None and points is not None
            co = sum(coordinate_l1(h, points, codec) for h in heatmaps)
            total = total + cfg.coordinate * co
            parts["coordinate"] = co.detach()
    if face is not None and hr is not None:
        face = face.float()
        if cfg.pixel > 0:
            px = pixel_loss(face, hr)
            total = total + cfg.pixel * px
            parts["pixel"] = px.detach()
        if cfg.gradient > 0:
            gr = gradient_loss(face, hr)
            total = total + cfg.gradient * gr
            parts["gradient"] = gr.detach()
    parts["total"] = total.detach()
    return LossParts(total, parts)
