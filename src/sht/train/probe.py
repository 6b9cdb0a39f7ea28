"""The transfer probe: can FPTN's losses supervise DHLN's landmarks? (issue 12; ``benchmarks/transfer_probe.py``)

On held-out labeled pairs (labels are read only to score, never by the losses) and a trained DHLN + FPTN:

- :func:`displacement_losses` -- the transfer loss of Eq. 5 when FPTN is given the true heatmaps of both views,
  and heatmaps rendered from landmarks moved by a fraction of the inter-ocular distance (the same random
  direction per landmark for every fraction). A transfer that can supervise landmarks rises with the error.
- :func:`position_cosines` -- the gradient of the SHT objective's pair terms (exactly as
  :meth:`~sht.train.stages.JointStage.pair_terms` computes them for unlabeled pairs: transfer terms with the
  configured gradient paths, and equivariance when weighted) with respect to each predicted landmark position
  (:meth:`JointStage.pose` offsets), against the direction from the prediction to the true landmark.
  **Sign convention**: the cosine is taken between the descent direction ``-dL/dp`` (where a gradient step moves
  the landmark) and ``p_true - p_pred``: positive = the loss pulls the landmark toward the truth (helpful),
  negative = away, 0 = no information. The same cosine of the supervised heatmap loss is reported as a reference
  (it must be clearly positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.dataset import Batch, BatchBuilder, FaceSet
from ..data.formats import LandmarkScheme, scheme_for
from ..data.pairs import PairBuilder
from ..losses import heatmap_mse, weigh_transfer
from ..metrics import displace_points
from .stages import JointStage, swap_views

FRACTIONS = (0.0, 0.02, 0.05, 0.10)
REGION_NAMES = {"jaw": "contour", "brows": "brows", "nose": "nose", "eyes": "eyes", "mouth": "mouth"}


def probe_batches(
    stage: JointStage, faces: FaceSet, pairs: int, lr_size: int = 16, seed: int = 0, per_batch: int = 8
) -> list[Batch]:
    """Pair batches of labeled ``faces`` drawn as in training (the stage's pair augmentation), at one LR size."""
    cfg = stage.cfg
    builder = BatchBuilder(faces, cfg.model.input_size, stage.codec, [lr_size], cfg.data.augment)
    pb = PairBuilder(builder, cfg.sht.pairs)
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(pb), generator=g)[: min(pairs, len(pb))]
    return [pb.build(pb.anchors[order[i : i + per_batch]], g).to(stage.device) for i in range(0, len(order), per_batch)]


@torch.no_grad()
def _dhln(stage: JointStage, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    stage.model.eval()
    out = stage.model(batch.input, batch.base)
    assert out.face is not None
    return out.final_heatmaps.float(), out.face.float()


@torch.no_grad()
def displacement_losses(
    stage: JointStage, batches: Sequence[Batch], fractions: Sequence[float] = FRACTIONS, seed: int = 0
) -> dict[str, dict[str, float]] | None:
    """Mean transfer loss per displacement (percent of the inter-ocular distance as keys): ``total`` (Eq. 5 with
    the lambda that reach DHLN) and each term. FPTN's condition face is DHLN's hallucinated face, as in SHT.
    None without FPTN."""
    t = stage.t
    if t is None:
        return None
    t.fptn.eval()
    sums: dict[str, dict[str, float]] = {}
    for bi, batch in enumerate(batches):
        assert batch.points is not None
        _, face = _dhln(stage, batch)
        cond = t.fit(face)
        target = t.fit(swap_views(batch.hr))
        for f in fractions:
            g = torch.Generator().manual_seed(seed * 1000 + bi)  # the same directions for every fraction
            pts = displace_points(batch.points.cpu(), f, g).to(stage.device) if f > 0 else batch.points
            hm = stage.codec.encode(pts, batch.visible)
            hm_tar = swap_views(hm)
            gen = t.fptn(cond, hm, hm_tar)
            terms = t.generator_terms(cond, hm_tar, gen, target)
            terms["total"] = weigh_transfer(terms, stage.cfg.sht.dhln_weights)
            row = sums.setdefault(f"{100 * f:g}", {})
            for k, v in terms.items():
                row[k] = row.get(k, 0.0) + float(v) / len(batches)
    return sums


def _region_masks(scheme: LandmarkScheme, k: int) -> dict[str, torch.Tensor]:
    out = {}
    for key, name in REGION_NAMES.items():
        idx = scheme.groups.get(key)
        if idx:
            m = torch.zeros(k, dtype=torch.bool)
            m[list(idx)] = True
            out[name] = m
    return out


def cosine_summary(
    grad: torch.Tensor, pred: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor | None = None, eps: float = 1e-12
) -> dict[str, float | dict[str, float]]:
    """Mean cosine between the descent direction ``-grad`` and ``truth - pred`` over landmarks ``(B, K, 2)``
    with a non-zero gradient and error (and visible), overall and per face region; ``weighted`` is
    ``sum(-g . d) / sum(|g| |d|)`` (large gradients count more); ``coverage`` the share of landmarks with a
    gradient; ``grad_norm`` the mean gradient norm per landmark (to weigh a term against another)."""
    d = (truth - pred).double()
    g = -grad.double()
    gn, dn = g.norm(dim=-1), d.norm(dim=-1)
    ok = (gn > eps) & (dn > eps)
    if visible is not None:
        ok &= visible.bool()
    cos = (g * d).sum(-1) / (gn * dn).clamp_min(eps)
    k = grad.shape[1]

    def mean(mask: torch.Tensor) -> float:
        sel = ok & mask
        return float(cos[sel].mean()) if sel.any() else float("nan")

    everyone = torch.ones_like(ok)
    regions = {name: mean(m.to(ok.device)[None].expand_as(ok)) for name, m in _region_masks(scheme_for(k), k).items()}
    dot = (g * d).sum(-1)[ok].sum()
    weighted = float(dot / (gn * dn)[ok].sum().clamp_min(eps)) if ok.any() else float("nan")
    return {
        "cosine": mean(everyone),
        "by_region": regions,
        "weighted": weighted,
        "coverage": float(ok.float().mean()),
        "grad_norm": float(gn.mean()),
    }


def position_gradients(stage: JointStage, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Gradients ``(B, K, 2)`` of each weighted pair term, of their sum (``total``, the SHT objective's part
    that depends on the landmark positions) and of the supervised heatmap loss (``supervised``, reference) with
    respect to each predicted landmark position, and the predicted positions the losses see."""
    sht = stage.cfg.sht
    heat, face = _dhln(stage, batch)
    if stage.t is not None:
        stage.t.fptn.eval()
    offsets = torch.zeros(*heat.shape[:2], 2, device=heat.device, requires_grad=True)
    terms, _ = stage.pair_terms([heat], [face], [batch], [False], offsets=[offsets])
    weights = {"adversarial": sht.lambda_gan, "l1": sht.lambda_l1, "perceptual": sht.lambda_perceptual}
    weights["equivariance"] = sht.lambda_equivariance
    weighted = {k: weights[k] * v for k, v in terms.items() if weights.get(k, 0) > 0}
    grads: dict[str, torch.Tensor] = {}
    for name, value in weighted.items():
        g = None
        if value.requires_grad:  # a term that does not depend on the pose has no gradient at all
            (g,) = torch.autograd.grad(value, offsets, retain_graph=True, allow_unused=True)
        grads[name] = torch.zeros_like(offsets) if g is None else g
    if grads:
        grads["total"] = torch.stack(list(grads.values())).sum(0)
    sup = heatmap_mse(stage.codec.translate(heat, offsets), batch.heatmaps, stage.cfg.loss.foreground_weight)
    (grads["supervised"],) = torch.autograd.grad(sup, offsets)
    if sht.fptn_heatmaps == "rendered" and stage.t is not None:
        pred = stage.codec.local_soft_argmax(heat, sht.decode_radius)
    else:
        pred = stage.codec.decode(heat)[0]
    return grads, pred.detach()


def position_cosines(stage: JointStage, batches: Sequence[Batch]) -> dict[str, dict[str, float | dict[str, float]]]:
    """:func:`cosine_summary` of every gradient of :func:`position_gradients`, pooled over ``batches``."""
    grads: dict[str, list[torch.Tensor]] = {}
    preds, truths, vis = [], [], []
    for batch in batches:
        g, pred = position_gradients(stage, batch)
        for k, v in g.items():
            grads.setdefault(k, []).append(v.detach().cpu())
        assert batch.points is not None
        preds.append(pred.cpu())
        truths.append(batch.points.cpu())
        shown = batch.visible if batch.visible is not None else torch.ones(batch.points.shape[:2], dtype=torch.bool)
        vis.append(shown.cpu())
    pred, truth, visible = torch.cat(preds), torch.cat(truths), torch.cat(vis)
    out = {k: cosine_summary(torch.cat(v), pred, truth, visible) for k, v in grads.items()}
    a, b = scheme_for(truth.shape[1]).outer_eyes
    nme = (pred - truth).norm(dim=-1).mean(-1) / (truth[:, a] - truth[:, b]).norm(dim=-1)
    out["prediction"] = {"nme_io": float(np.mean(nme.numpy())) * 100}
    return out
