"""Objective functions of the paper, one function per equation.

- Eq. 3  :func:`gradient_map` -- per-channel central-difference gradient magnitude ``G(I)``.
- Eq. 4  :func:`dhln_loss` -- ``gamma_1 ||H - H*||^2 + gamma_2 ||I_SR - I_HR||_1 + gamma_3 ||G(I_SR) - G(I_HR)||_1``
  (with ``gamma_1 = 0`` it is Eq. 10's label-free ``L'_DH``).
- Eq. 6  :func:`discriminator_loss` / :func:`generator_adversarial` -- the two-discriminator GAN objective.
- Eq. 7  :func:`pixel_loss` (L1); Eq. 8 :func:`perceptual_l1` on VGG-19 conv1_2 features.
- Eq. 5  :func:`pose_transfer_terms` (the three terms) and :func:`weigh_transfer`
  (``lambda_1 L_GAN + lambda_2 L_L1 + lambda_3 L_perL1``).
- Eq. 9  the SHT objective is assembled per step in :class:`sht.train.stages.JointStage` from the above.
- (not in the paper) :func:`equivariance_loss` -- for two views related by a known transform ``T``,
  ``||H_k - T(H_j)||^2`` and ``||H_j - T^-1(H_k)||^2``: the standard semi-supervised landmark baseline.
- JASRNet's ``1*CPM + 1*L1`` (jasrnet-spec §4): :func:`jasrnet_loss`; GHCU's point loss: :func:`ghcu_loss`.
- The face detector (:mod:`sht.models.face_detector`): :func:`detector_loss` (CenterNet's focal loss and L1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import DetectorLossConfig, LossConfig
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


def heatmap_mse(
    pred: torch.Tensor, target: torch.Tensor, foreground_weight: float = 0.0, visible: torch.Tensor | None = None
) -> torch.Tensor:
    """``||H - H*||_2^2`` (mean). With ``foreground_weight = w > 0`` pixels in the dilated foreground of the
    target weigh ``1 + w`` (the weighted loss map of Adaptive Wing, Wang et al. 2019). ``visible`` ``(B, K)``
    leaves the heatmaps of hidden landmarks out of the loss."""
    err = (pred.float() - target) ** 2
    if foreground_weight > 0:
        fg = (F.max_pool2d(target, 3, stride=1, padding=1) > 0.2).to(err.dtype)
        err = err * (1 + foreground_weight * fg)
    if visible is not None:
        w = visible.to(err.dtype)[..., None, None]
        return (err * w).sum() / (w.sum() * err.shape[-1] * err.shape[-2]).clamp_min(1)
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
    visible: torch.Tensor | None = None,
) -> LossParts:
    """Eq. 4 summed over stacks (intermediate supervision). ``labeled=False`` drops every landmark term
    (``gamma_1 = 0``, Eq. 10) and never reads the targets."""
    total = torch.zeros((), device=(face if face is not None else heatmaps[0]).device)
    parts: dict[str, torch.Tensor] = {}
    if labeled and heatmaps and cfg.heatmap > 0:
        assert target_heatmaps is not None
        hm = sum(heatmap_mse(h, target_heatmaps, cfg.foreground_weight, visible) for h in heatmaps)
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


def jasrnet_loss(
    heatmaps: list[torch.Tensor],
    background: list[torch.Tensor],
    face: torch.Tensor,
    target_heatmaps: torch.Tensor,
    hr: torch.Tensor,
    visible: torch.Tensor | None = None,
) -> LossParts:
    """JASRNet's ``1*CPM + 1*L1`` (jasrnet-spec §4). CPM: ``1/(2B)`` times the squared error summed over the three
    stages and every pixel of the visible landmark channels and of the background channel, whose target is
    ``max(0, 1 - max_k H_k)`` (spec §2); L1: mean ``|SR - HR|``."""
    b = target_heatmaps.shape[0]
    target_bg = (1 - target_heatmaps.amax(dim=1, keepdim=True)).clamp_min(0)
    mask = torch.ones_like(target_heatmaps[:, :, :1, :1]) if visible is None else visible.to(target_heatmaps.dtype)
    mask = mask.reshape(b, -1, 1, 1)
    cpm = sum(
        (((h.float() - target_heatmaps) ** 2) * mask).sum() + ((g.float() - target_bg) ** 2).sum()
        for h, g in zip(heatmaps, background, strict=True)
    ) / (2 * b)
    l1 = pixel_loss(face.float(), hr)
    total = cpm + l1
    return LossParts(total, {"cpm": cpm.detach(), "l1": l1.detach(), "total": total.detach()})


def ghcu_loss(
    pred: torch.Tensor, target: torch.Tensor, scale: float = 1.0, visible: torch.Tensor | None = None
) -> torch.Tensor:
    """GHCU's loss (NOT FOUND in the SA spec; chosen): the mean squared distance between corrected and target
    points ``(B, K, 2)``, in units of ``1 / scale`` (heatmap pixels for the codec's scale), over visible points.
    Squared rather than L1 because GHCU exists for outliers: an L1 fit tends to the median correction, zero for
    most points, while the squared error lets the few large errors drive it."""
    err = ((pred.float() - target.float()) * scale).pow(2).sum(-1)
    if visible is None:
        return err.mean()
    w = visible.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1)


def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 6 for the discriminators: maximise ``log D(real) + log(1 - D(fake))`` for each of D_A and D_S, i.e.
    minimise the binary cross-entropy of their patch logits."""
    return sum((_bce(r, True) + _bce(f, False) for r, f in zip(real, fake, strict=True)), torch.zeros(()))


def generator_adversarial(fake: list[torch.Tensor]) -> torch.Tensor:
    """Eq. 6 for the generator, in the non-saturating form ``-log D(fake)`` summed over D_A and D_S."""
    return sum((_bce(f, True) for f in fake), torch.zeros(()))


def perceptual_l1(vgg: torch.nn.Module, generated: torch.Tensor, target: torch.Tensor, size: int = 0) -> torch.Tensor:
    """Eq. 8: ``||phi(I_ger) - phi(I_tar)||_1`` with ``phi`` = VGG-19 conv1_2, measured in units of the [0, 1]
    image scale (Caffe-convention features / 255), mean over elements; no gradient into the target. ``size`` > 0
    first resizes both faces (bilinear, antialiased) to ``size`` pixels."""
    if size and size < generated.shape[-1]:
        generated = F.interpolate(generated, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        target = F.interpolate(target, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        ft = vgg(target.float())
    return (vgg(generated.float()) - ft).abs().mean() / 255.0


def pose_transfer_terms(
    generated: torch.Tensor,
    target: torch.Tensor,
    fake_logits: list[torch.Tensor] | None,
    vgg: torch.nn.Module | None,
    perceptual_size: int = 0,
) -> dict[str, torch.Tensor]:
    """The unweighted terms of Eq. 5 (generator side): ``adversarial`` (Eq. 6, when logits are given), ``l1``
    (Eq. 7) and ``perceptual`` (Eq. 8, when ``vgg`` is given)."""
    terms = {"l1": pixel_loss(generated.float(), target)}
    if fake_logits is not None:
        terms["adversarial"] = generator_adversarial(fake_logits)
    if vgg is not None:
        terms["perceptual"] = perceptual_l1(vgg, generated, target, perceptual_size)
    return terms


def weigh_transfer(terms: dict[str, torch.Tensor], weights: tuple[float, float, float]) -> torch.Tensor:
    """``lambda_1 L_GAN + lambda_2 L_L1 + lambda_3 L_perL1`` for ``weights`` = (lambda_1, lambda_2, lambda_3)."""
    total = torch.zeros((), device=terms["l1"].device)
    for name, w in zip(("adversarial", "l1", "perceptual"), weights, strict=True):
        if w > 0:
            if name not in terms:
                raise ValueError(
                    "sht.lambda_perceptual > 0 needs the VGG-19 conv1_2 extractor (fptn.vgg_weights)"
                    if name == "perceptual"
                    else f"the {name} term of L_PT was not computed"
                )
            total = total + w * terms[name]
    return total


def masked_heatmap_mse(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, foreground_weight: float = 0.0
) -> torch.Tensor:
    """:func:`heatmap_mse` over the pixels where ``mask`` ``(B, 1, S, S)`` is 1; the foreground of the weighted
    form is where either map (dilated) exceeds 0.2."""
    err = (pred.float() - target.float()) ** 2
    if foreground_weight > 0:
        both = torch.maximum(pred.detach().float(), target.detach().float())
        fg = (F.max_pool2d(both, 3, stride=1, padding=1) > 0.2).to(err.dtype)
        err = err * (1 + foreground_weight * fg)
    m = mask.to(err.dtype).expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1)


def equivariance_loss(
    heat_j: torch.Tensor,
    heat_k: torch.Tensor,
    transform: torch.Tensor,
    codec: HeatmapCodec,
    foreground_weight: float = 0.0,
) -> torch.Tensor:
    """Equivariance of two views' heatmaps ``(n, K, S, S)`` under the known map ``transform`` ``(n, 3, 3)`` from
    view j's image pixels to view k's: ``(||H_k - T(H_j)||^2 + ||H_j - T^-1(H_k)||^2) / 2`` over the pixels both
    views cover (:meth:`HeatmapCodec.warp`); gradients reach both views. Zero for heatmaps that are exact warps
    of each other (up to bilinear resampling), no FPTN involved."""
    warped_j, mask_k = codec.warp(heat_j, transform)
    warped_k, mask_j = codec.warp(heat_k, torch.linalg.inv(transform.double()))
    return 0.5 * (
        masked_heatmap_mse(heat_k, warped_j, mask_k, foreground_weight)
        + masked_heatmap_mse(heat_j, warped_k, mask_j, foreground_weight)
    )


def detector_loss(
    heat: torch.Tensor,
    size: torch.Tensor,
    offset: torch.Tensor,
    target_heat: torch.Tensor,
    weight: torch.Tensor,
    target_size: torch.Tensor,
    target_offset: torch.Tensor,
    mask: torch.Tensor,
    cfg: DetectorLossConfig,
) -> LossParts:
    """CenterNet's penalty-reduced focal loss on the centre heatmap (``heat``: logits; ``weight`` 0 where
    ignored) plus L1 on the log size and the offset at the centre cells (``mask``), each normalised by the number
    of faces in the batch (at least 1)."""
    p = heat.float().sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = (target_heat >= 1).float()
    log_p, log_q = F.logsigmoid(heat.float()), F.logsigmoid(-heat.float())
    focal_pos = -((1 - p) ** cfg.alpha) * log_p * pos
    focal_neg = -((1 - target_heat) ** cfg.beta) * p**cfg.alpha * log_q * (1 - pos) * weight
    n = pos.sum().clamp(min=1)
    focal = (focal_pos.sum() + focal_neg.sum()) / n
    l_size = (F.l1_loss(size.float(), target_size, reduction="none") * mask).sum() / n
    l_off = (F.l1_loss(offset.float(), target_offset, reduction="none") * mask).sum() / n
    total = focal + cfg.size * l_size + cfg.offset * l_off
    parts = {"total": total.detach(), "focal": focal.detach(), "size": l_size.detach(), "offset": l_off.detach()}
    return LossParts(total, parts)
