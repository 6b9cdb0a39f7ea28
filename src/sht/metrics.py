"""Evaluation metrics: landmark NME / CED / AUC / failure rate and image PSNR / SSIM on the BT.601 Y channel.

Landmark metrics work in float64 numpy (torch tensors are accepted and converted). Image metrics follow the
usual face-hallucination protocol: RGB is converted to ITU-R BT.601 luma in the 16-235 range, then PSNR (data
range 255) and SSIM (Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03, data range 255, valid region only, i.e.
scikit-image's ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=255)``) are computed per image without any border crop. All image arithmetic is done in float64;
nothing is ever computed in uint8.

Image value conventions:

* numpy arrays are channel-last ``(H, W, 3)`` or ``(N, H, W, 3)`` with values in ``0..255`` (uint8 or float);
* torch tensors are channel-first ``(3, H, W)`` or ``(B, 3, H, W)``; floating tensors hold values in
  ``[0, 1]``, integer tensors hold 8-bit levels ``0..255``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from pytorch_msssim import ssim as _msssim_ssim

from sht.data.formats import LandmarkScheme, scheme_for

NORM_KINDS = ("inter_ocular", "inter_pupil", "box", "diagonal", "face_width")

SSIM_WIN_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)
DATA_RANGE = 255.0

# ----------------------------------------------------------------------------------------------------
# Landmark metrics
# ----------------------------------------------------------------------------------------------------


def _as_f64(a: Any, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot convert to a float array ({exc})") from None


def _as_points(a: Any, name: str) -> np.ndarray:
    """``(N, K, 2)`` float64 view of landmark arrays given as ``(N, K, 2)`` or ``(K, 2)``."""
    pts = _as_f64(a, name)
    if pts.ndim == 2:
        pts = pts[None]
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise ValueError(f"{name}: expected shape (N, K, 2) or (K, 2), got {tuple(np.shape(a))}")
    if pts.shape[1] == 0:
        raise ValueError(f"{name}: no landmarks (K = 0)")
    return pts


def _as_visible(visible: Any, shape: tuple[int, int]) -> np.ndarray:
    if isinstance(visible, torch.Tensor):
        visible = visible.detach().cpu().numpy()
    vis = np.asarray(visible)
    if vis.ndim == 1:
        vis = vis[None]
    if vis.shape != shape:
        raise ValueError(f"visible: shape mismatch, expected {shape} (N, K), got {tuple(np.shape(visible))}")
    if vis.dtype != np.bool_:
        if not np.all((vis == 0) | (vis == 1)):
            raise ValueError("visible: expected a boolean (or 0/1) mask")
        vis = vis.astype(bool)
    return vis


def _check_norm(d: np.ndarray, kind: str) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(d) | (d <= 0))
    if bad.size:
        shown = ", ".join(str(i) for i in bad[:5]) + (", ..." if bad.size > 5 else "")
        raise ValueError(
            f"normaliser {kind!r} is zero or non-finite for {bad.size} image(s) (indices {shown}); "
            "check the ground truth (coincident points?) or the boxes"
        )
    return d


def _boxes_wh(pts: np.ndarray, boxes: Any | None, visible: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights of the given boxes, or of the (visible) GT landmarks' bounding boxes."""
    n = pts.shape[0]
    if boxes is not None:
        b = _as_f64(boxes, "boxes")
        if b.ndim == 1:
            b = b[None]
        if b.shape != (n, 4):
            raise ValueError(f"boxes: shape mismatch, expected ({n}, 4) as x0,y0,x1,y1, got {tuple(b.shape)}")
        w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        if np.any(w < 0) or np.any(h < 0):
            raise ValueError("boxes: expected x0, y0, x1, y1 with x1 >= x0 and y1 >= y0")
        return w, h
    if visible is None:
        lo, hi = pts.min(axis=1), pts.max(axis=1)
    else:
        if not np.all(visible.any(axis=1)):
            raise ValueError("visible: some images have no visible landmark to build a box from")
        m = visible[..., None]
        lo = np.where(m, pts, np.inf).min(axis=1)
        hi = np.where(m, pts, -np.inf).max(axis=1)
    return hi[:, 0] - lo[:, 0], hi[:, 1] - lo[:, 1]


def _resolve_scheme(scheme: LandmarkScheme | None, k: int, kind: str) -> LandmarkScheme:
    if scheme is None:
        try:
            return scheme_for(k)
        except ValueError as exc:
            raise ValueError(
                f"normaliser {kind!r} needs a landmark scheme, and none is known for {k} points ({exc}); "
                "pass scheme= or use a box-based normaliser ('box', 'diagonal', 'face_width')"
            ) from None
    if scheme.num_points != k:
        raise ValueError(f"scheme {scheme.name!r} has {scheme.num_points} points but the landmarks have {k}")
    return scheme


def normalizer(
    gt: Any,
    kind: str,
    scheme: LandmarkScheme | None = None,
    boxes: Any | None = None,
    visible: Any | None = None,
) -> np.ndarray:
    """Per-image NME normaliser ``(N,)`` for ground truth ``(N, K, 2)`` (or ``(K, 2)`` -> shape ``(1,)``).

    ``kind``: ``"inter_ocular"`` (outer eye corners; 36-45 for 68 points), ``"inter_pupil"`` (distance between
    the means of the scheme's left- and right-eye points), ``"box"`` (``sqrt(w * h)``), ``"diagonal"``
    (``sqrt(w**2 + h**2)``) or ``"face_width"`` (``w``). The box is ``boxes`` ``(N, 4)`` as ``x0, y0, x1, y1``
    when given, otherwise the bounding box of the GT landmarks (of the ``visible`` ones when a mask is given).
    The scheme (only needed by the eye-based kinds) defaults to ``scheme_for(K)``.
    """
    pts = _as_points(gt, "gt")
    n, k, _ = pts.shape
    if kind not in NORM_KINDS:
        raise ValueError(f"unknown normaliser kind {kind!r}; expected one of {', '.join(NORM_KINDS)}")
    vis = None if visible is None else _as_visible(visible, (n, k))
    if kind == "inter_ocular":
        sch = _resolve_scheme(scheme, k, kind)
        a, b = sch.outer_eyes
        d = np.linalg.norm(pts[:, a] - pts[:, b], axis=-1)
    elif kind == "inter_pupil":
        sch = _resolve_scheme(scheme, k, kind)
        if not sch.left_eye or not sch.right_eye:
            raise ValueError(f"scheme {sch.name!r} has no eye points, so 'inter_pupil' is not available")
        left = pts[:, list(sch.left_eye)].mean(axis=1)
        right = pts[:, list(sch.right_eye)].mean(axis=1)
        d = np.linalg.norm(left - right, axis=-1)
    else:
        w, h = _boxes_wh(pts, boxes, vis)
        if kind == "box":
            d = np.sqrt(w * h)
        elif kind == "diagonal":
            d = np.sqrt(w * w + h * h)
        else:
            d = w
    return _check_norm(np.asarray(d, dtype=np.float64), kind)


def displace_points(
    points: torch.Tensor, fraction: float, generator: torch.Generator, kind: str = "inter_ocular"
) -> torch.Tensor:
    """``(B, K, 2)`` points each moved by ``fraction`` of its face's normaliser (inter-ocular distance by
    default) in a uniformly random direction: landmarks with a known error of that NME, for probing losses."""
    norm = torch.as_tensor(normalizer(points.detach().double().cpu().numpy(), kind), dtype=points.dtype)
    angle = torch.rand(points.shape[:-1], generator=generator) * 2 * np.pi
    step = torch.stack([torch.cos(angle), torch.sin(angle)], dim=-1).to(points.dtype)
    return points + fraction * norm.to(points.device)[:, None, None] * step.to(points.device)


def point_errors(pred: Any, gt: Any) -> np.ndarray:
    """Euclidean error per point ``(N, K)`` between ``pred`` and ``gt`` (both ``(N, K, 2)`` or ``(K, 2)``)."""
    p, g = _as_points(pred, "pred"), _as_points(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"shape mismatch: pred {tuple(np.shape(pred))} vs gt {tuple(np.shape(gt))}")
    return np.linalg.norm(p - g, axis=-1)


def nme(
    pred: Any,
    gt: Any,
    norm: str = "inter_ocular",
    scheme: LandmarkScheme | None = None,
    boxes: Any | None = None,
    visible: Any | None = None,
) -> np.ndarray:
    """Per-image normalised mean error ``(N,)``: mean over points of ``|pred - gt|`` over the normaliser.

    ``visible`` ``(N, K)`` bool restricts the mean to visible points (AFLW protocol); an image without any
    visible point is an error. See :func:`normalizer` for ``norm``, ``scheme`` and ``boxes``.
    """
    err = point_errors(pred, gt)
    n, k = err.shape
    vis = None if visible is None else _as_visible(visible, (n, k))
    d = normalizer(gt, norm, scheme=scheme, boxes=boxes, visible=vis)
    if vis is None:
        mean_err = err.mean(axis=1)
    else:
        count = vis.sum(axis=1)
        empty = np.flatnonzero(count == 0)
        if empty.size:
            raise ValueError(f"visible: image(s) {empty[:5].tolist()} have no visible landmark")
        mean_err = np.where(vis, err, 0.0).sum(axis=1) / count
    return mean_err / d


def _as_nmes(nmes: Any) -> np.ndarray:
    a = _as_f64(nmes, "nmes").reshape(-1)
    if a.size == 0:
        raise ValueError("nmes: empty")
    if np.any(np.isnan(a)):
        raise ValueError("nmes: contains NaN")
    return a


def _check_thr(threshold: float, step: float | None = None) -> None:
    if not (np.isfinite(threshold) and threshold > 0):
        raise ValueError(f"threshold must be a positive number, got {threshold}")
    if step is not None and not (np.isfinite(step) and 0 < step <= threshold):
        raise ValueError(f"step must be in (0, threshold], got {step}")


def ced_grid(threshold: float = 0.10, step: float = 1e-4) -> np.ndarray:
    """The CED abscissae ``0, step, ..., threshold`` (``threshold`` must be a whole number of steps).

    Built as ``np.arange(n + 1) * step`` with ``n = round(threshold / step)``: bit-identical to the reference
    ``np.arange(0, threshold + step, step)`` whenever that has ``n + 1`` points (e.g. 0.08 and 0.10 with step
    1e-4), but never adds the extra point past ``threshold`` that floating-point rounding gives the latter for
    some thresholds (0.05 and 0.07 with step 1e-4).
    """
    _check_thr(threshold, step)
    ratio = threshold / step
    n = int(round(ratio))
    if abs(ratio - n) > 1e-6 * max(1.0, ratio):
        raise ValueError(f"threshold ({threshold}) must be a whole multiple of step ({step})")
    return np.arange(n + 1) * step


def ced(nmes: Any, threshold: float = 0.10, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: ``xs`` = :func:`ced_grid` (``0, step, ..., threshold``) and ``ys`` =
    fraction of NMEs ``<= x``."""
    a = _as_nmes(nmes)
    xs = ced_grid(threshold, step)
    ys = np.searchsorted(np.sort(a), xs, side="right") / a.size
    return xs, ys


def auc(nmes: Any, threshold: float = 0.10, step: float = 1e-4) -> float:
    """Area under the CED up to ``threshold`` (trapezoid rule), divided by ``threshold``: in ``[0, 1]``."""
    xs, ys = ced(nmes, threshold, step)
    return float(np.trapezoid(ys, xs) / threshold)


def failure_rate(nmes: Any, threshold: float = 0.10) -> float:
    """Fraction of images whose NME is strictly above ``threshold``."""
    a = _as_nmes(nmes)
    _check_thr(threshold)
    return float((a > threshold).mean())


def summarize_nme(nmes: Any, threshold: float = 0.10) -> dict[str, float | int]:
    """``{"nme": mean NME, "auc": AUC@threshold, "fr": failure rate@threshold, "n": number of images}``."""
    a = _as_nmes(nmes)
    return {
        "nme": float(a.mean()),
        "auc": auc(a, threshold),
        "fr": failure_rate(a, threshold),
        "n": int(a.size),
    }


# ----------------------------------------------------------------------------------------------------
# Image metrics
# ----------------------------------------------------------------------------------------------------


def _y_from_levels(r: Any, g: Any, b: Any) -> Any:
    # Same operation order as the reference protocol, so float64 results agree bit for bit.
    return 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255


def _levels_8bit(x: torch.Tensor) -> torch.Tensor:
    """8-bit levels (as float64 integers 0..255) that saving ``x`` (floats in [0, 1]) to a PNG gives."""
    if not torch.is_floating_point(x):
        return x.clamp(0, 255).to(torch.float64)
    return torch.floor(x.clamp(0, 1) * 255 + 0.5).to(torch.float64)


def _check_unit_range(x: torch.Tensor, name: str) -> None:
    if x.numel() and float(x.detach().max()) > 2.0:
        raise ValueError(f"{name}: floating tensors must hold values in [0, 1] (max is {float(x.max()):.3g})")


def rgb_to_y(img: Any, dtype: torch.dtype = torch.float64) -> Any:
    """ITU-R BT.601 luma in the 16-235 range: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, RGB in 0..255.

    * numpy ``(..., 3)`` (e.g. ``H x W x 3``) with values in 0..255, uint8 or float -> float64 ``(...)``;
    * torch ``(B, 3, H, W)`` / ``(3, H, W)``, floating with values in ``[0, 1]`` (multiplied by 255 first) or
      integer with levels 0..255 -> ``(B, 1, H, W)`` / ``(1, H, W)`` in the 16-235 scale, computed in float64
      and returned as ``dtype`` (autograd flows through floating inputs).

    White maps to 235 and black to 16. Arithmetic is never done in an integer type.
    """
    if isinstance(img, torch.Tensor):
        if img.ndim not in (3, 4) or img.shape[-3] != 3:
            raise ValueError(f"rgb_to_y: expected a (B, 3, H, W) or (3, H, W) tensor, got {tuple(img.shape)}")
        if torch.is_floating_point(img):
            _check_unit_range(img, "rgb_to_y")
            x = img.to(torch.float64) * 255
        else:
            x = img.to(torch.float64)
        y = _y_from_levels(x[..., 0:1, :, :], x[..., 1:2, :, :], x[..., 2:3, :, :])
        return y.to(dtype)
    a = np.asarray(img)
    if a.ndim < 1 or a.shape[-1] != 3:
        raise ValueError(f"rgb_to_y: expected a numpy array (..., 3) such as H x W x 3, got {a.shape}")
    a = a.astype(np.float64)
    return _y_from_levels(a[..., 0], a[..., 1], a[..., 2])


def _y_batch(img: Any, name: str, to_8bit: bool) -> torch.Tensor:
    """``(B, 1, H, W)`` float64 Y (16-235) from torch (B, 3, H, W) or numpy (N, H, W, 3) images."""
    if isinstance(img, torch.Tensor):
        if img.ndim == 3:
            img = img[None]
        if img.ndim != 4 or img.shape[1] != 3:
            raise ValueError(f"{name}: expected a (B, 3, H, W) or (3, H, W) tensor, got {tuple(img.shape)}")
        if to_8bit:
            if torch.is_floating_point(img):
                _check_unit_range(img, name)
            img = _levels_8bit(img.detach())
            return _y_from_levels(img[:, 0:1], img[:, 1:2], img[:, 2:3])
        return rgb_to_y(img.detach())
    a = np.asarray(img)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"{name}: expected a numpy (H, W, 3) or (N, H, W, 3) array, got {np.shape(img)}")
    a = a.astype(np.float64)
    if to_8bit:
        a = np.floor(np.clip(a, 0, 255) + 0.5)
    return torch.from_numpy(np.ascontiguousarray(rgb_to_y(a)[:, None]))


def _y_pair(sr: Any, hr: Any, to_8bit: bool) -> tuple[torch.Tensor, torch.Tensor]:
    ys, yh = _y_batch(sr, "sr", to_8bit), _y_batch(hr, "hr", to_8bit)
    if ys.shape != yh.shape:
        raise ValueError(f"shape mismatch: sr {tuple(np.shape(sr))} vs hr {tuple(np.shape(hr))}")
    return ys, yh


def psnr_y(sr: Any, hr: Any, to_8bit: bool = False) -> np.ndarray:
    """Per-image PSNR (dB, float64 ``(B,)``) on the Y channel with data range 255 and no border crop.

    Inputs: torch ``(B, 3, H, W)`` in ``[0, 1]`` or numpy ``(H, W, 3)`` / ``(N, H, W, 3)`` in 0..255.
    ``to_8bit=True`` first rounds both images to 8-bit levels (like :func:`sht.data.degradation.quantize`, but
    exactly), so the figures equal those of the saved PNG files. Identical images give ``inf``.
    """
    ys, yh = _y_pair(sr, hr, to_8bit)
    mse = ((ys - yh) ** 2).flatten(1).mean(dim=1).numpy()
    with np.errstate(divide="ignore"):
        return 10 * np.log10(DATA_RANGE**2 / mse)


def _gauss_win() -> torch.Tensor:
    coords = torch.arange(SSIM_WIN_SIZE, dtype=torch.float64) - SSIM_WIN_SIZE // 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).reshape(1, 1, 1, SSIM_WIN_SIZE)


def ssim_y(sr: Any, hr: Any, to_8bit: bool = False) -> np.ndarray:
    """Per-image SSIM (float64 ``(B,)``) on the Y channel: Gaussian window 11, sigma 1.5, K1=0.01, K2=0.03,
    data range 255, mean over the valid region (no padding, no border crop); equal to scikit-image's
    ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255)``.
    Inputs and ``to_8bit`` as in :func:`psnr_y`; images must be at least 11 x 11.
    """
    ys, yh = _y_pair(sr, hr, to_8bit)
    if min(ys.shape[-2:]) < SSIM_WIN_SIZE:
        raise ValueError(f"ssim_y: images must be at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE}, got {ys.shape[-2:]}")
    out = _msssim_ssim(ys, yh, data_range=DATA_RANGE, size_average=False, win=_gauss_win(), K=SSIM_K)
    return out.numpy().astype(np.float64)


def psnr_ssim_y_uint8(sr_uint8: np.ndarray, hr_uint8: np.ndarray) -> tuple[float, float]:
    """PSNR and SSIM on the Y channel for one pair of ``H x W x 3`` uint8 RGB images (e.g. read from PNGs)."""
    a, b = np.asarray(sr_uint8), np.asarray(hr_uint8)
    for name, x in (("sr", a), ("hr", b)):
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(f"{name}: expected an H x W x 3 uint8 array, got {x.dtype} {x.shape}")
    return float(psnr_y(a, b)[0]), float(ssim_y(a, b)[0])


# ----------------------------------------------------------------------------------------------------
# Face detection metrics
# ----------------------------------------------------------------------------------------------------


def _box_array(x: Any, cols: int, name: str) -> np.ndarray:
    arr = _as_f64(x, name) if np.size(x) else np.zeros((0, cols))
    return arr.reshape(-1, arr.shape[-1])[:, :cols]


def box_iou_np(a: Any, b: Any) -> np.ndarray:
    """IoU matrix ``(N, M)`` of boxes ``(N, >=4)`` and ``(M, >=4)`` (``x0, y0, x1, y1``), float64."""
    from sht.models.face_detector import box_iou

    ta = torch.from_numpy(_box_array(a, 4, "boxes"))
    tb = torch.from_numpy(_box_array(b, 4, "boxes"))
    return box_iou(ta, tb).numpy()


def match_detections(
    pred: Any, truth: Any, iou: float = 0.3, ignore: Any | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy matching of one image's detections ``(N, 5)`` (``x0, y0, x1, y1, score``) to its faces ``(M, 4)``,
    best score first, at IoU > ``iou``. Returns the scores, per detection 1 (true), 0 (false) or -1 (unmatched
    but on an ``ignore`` region: IoU > ``iou`` or centre inside it; not counted), and the best score that found
    each face (-inf for missed faces)."""
    p, t = _box_array(pred, 5, "detections"), _box_array(truth, 4, "faces")
    order = np.argsort(-p[:, 4], kind="stable")
    p = p[order]
    ious = box_iou_np(p, t) if len(t) else np.zeros((len(p), 0))
    taken = np.zeros(len(t), dtype=bool)
    found = np.full(len(t), -np.inf)
    flags = np.zeros(len(p))
    for i in range(len(p)):
        cand = np.where(~taken & (ious[i] > iou))[0] if len(t) else np.zeros(0, dtype=int)
        if len(cand):
            j = cand[np.argmax(ious[i, cand])]
            taken[j], found[j], flags[i] = True, p[i, 4], 1
    if ignore is not None and np.size(ignore) and len(p):
        g = _box_array(ignore, 4, "ignore")
        flags[(flags == 0) & (centre_inside(p, g) | (box_iou_np(p, g) > iou).any(1))] = -1
    return p[:, 4], flags, found


def centre_inside(boxes: Any, regions: Any) -> np.ndarray:
    """Per box ``(N, >=4)``: whether its centre lies inside any of ``regions`` ``(M, 4)`` (all ``x0, y0, x1, y1``)."""
    p, g = np.asarray(boxes, dtype=np.float64).reshape(len(boxes), -1), np.asarray(regions, dtype=np.float64)
    if not len(p) or not len(g):
        return np.zeros(len(p), dtype=bool)
    cx, cy = (p[:, 0] + p[:, 2]) / 2, (p[:, 1] + p[:, 3]) / 2
    return (
        (cx[:, None] >= g[None, :, 0])
        & (cx[:, None] <= g[None, :, 2])
        & (cy[:, None] >= g[None, :, 1])
        & (cy[:, None] <= g[None, :, 3])
    ).any(1)


def detection_summary(
    preds: list[Any], truths: list[Any], iou: float = 0.3, threshold: float = 0.0, ignores: list[Any] | None = None
) -> dict[str, float]:
    """Over a set of images: ``recall`` and ``fp_per_image`` of the detections scoring at least ``threshold``,
    and ``ap``, the average precision over all scores (area under the interpolated precision-recall curve)."""
    scores, flags, founds = [], [], []
    for k, (p, t) in enumerate(zip(preds, truths, strict=True)):
        s, f, found = match_detections(p, t, iou, None if ignores is None else ignores[k])
        scores.append(s), flags.append(f), founds.append(found)
    s, f = np.concatenate(scores) if scores else np.zeros(0), np.concatenate(flags) if flags else np.zeros(0)
    found = np.concatenate(founds) if founds else np.zeros(0)
    n_faces = len(found)
    keep = f >= 0
    s, f = s[keep], f[keep]
    order = np.argsort(-s, kind="stable")
    tp = np.cumsum(f[order] == 1)
    fp = np.cumsum(f[order] == 0)
    ap = 0.0
    if n_faces and len(tp):
        recall = tp / n_faces
        precision = tp / np.maximum(tp + fp, 1)
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
    n_img = max(len(preds), 1)
    return {
        "recall": float((found >= threshold).mean()) if n_faces else float("nan"),
        "fp_per_image": float(((f == 0) & (s >= threshold)).sum() / n_img),
        "ap": ap,
        "faces": float(n_faces),
        "images": float(len(preds)),
    }
