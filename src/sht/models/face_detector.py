"""A small anchor-free face detector (CenterNet-style) for faces from about 10 px up.

The network maps an RGB image to three maps at ``stride`` (4 by default, so a 12-px face spans three cells):
a face-centre heatmap (logits), the box size ``log(w / size_ref), log(h / size_ref)`` and the centre's offset
within its cell. A box is the 68-point landmark box (x right, y down, pixels, the image spanning ``[0, W] x [0,
H]``). :class:`CenterCodec` turns boxes into training targets and maps back into boxes (max-pool peak picking,
then :func:`nms`); :func:`detect` runs the network over an image pyramid (faces larger than ``max_face`` are found
on downscaled copies; optionally the smallest faces on an enlarged copy) in tiles (large photos) and merges the
levels.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..config import FaceDetectorConfig


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1, kernel: int = 3, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Block(nn.Module):
    """Two 3x3 convolutions with an identity shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_ConvBN(c, c), _ConvBN(c, c, act=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.body(x))


@dataclass
class DetectorOutput:
    """Raw maps at the output stride: ``heat`` logits ``(B, 1, h, w)``, ``size`` and ``offset`` ``(B, 2, h, w)``."""

    heat: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor


class FaceDetector(nn.Module):
    """Backbone at strides 2..2^n, a top-down merge to the output stride and the three heads."""

    def __init__(self, cfg: FaceDetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stages, cin = [], 3
        for c, n in zip(cfg.channels, cfg.blocks, strict=True):
            stages.append(nn.Sequential(_ConvBN(cin, c, stride=2), *[_Block(c) for _ in range(n)]))
            cin = c
        self.stages = nn.ModuleList(stages)
        self.first = int(math.log2(cfg.stride)) - 1  # index of the stage at the output stride
        used = cfg.channels[self.first :]
        self.lateral = nn.ModuleList(_ConvBN(c, cfg.neck, kernel=1) for c in used)
        self.smooth = nn.ModuleList(_ConvBN(cfg.neck, cfg.neck) for _ in used[:-1])
        self.head = _ConvBN(cfg.neck, cfg.neck)
        self.heat = nn.Conv2d(cfg.neck, 1, 1)
        self.box = nn.Conv2d(cfg.neck, 4, 1)
        nn.init.constant_(self.heat.bias, -4.6)  # prior 0.01 on every cell (focal-loss start)
        nn.init.zeros_(self.box.weight)
        nn.init.zeros_(self.box.bias)

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        """``x``: ``(B, 3, H, W)`` in [0, 1], H and W multiples of ``cfg.max_stride``."""
        feats = []
        for s in self.stages:
            x = s(x)
            feats.append(x)
        feats = feats[self.first :]
        y = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            y = F.interpolate(y, size=feats[i].shape[-2:], mode="nearest") + self.lateral[i](feats[i])
            y = self.smooth[i](y)
        y = self.head(y)
        box = self.box(y)
        return DetectorOutput(self.heat(y), box[:, :2], box[:, 2:].sigmoid() * 2 - 0.5)


@torch.no_grad()
def fold_batchnorm(model: FaceDetector) -> FaceDetector:
    """An inference copy of ``model`` with every BatchNorm folded into the convolution before it (``w' = w * g /
    sqrt(v + eps)``, ``b' = beta - m * g / sqrt(v + eps)``): the same outputs up to float rounding, without the
    normalisation's passes over the feature maps. The copy is in eval mode, for inference (no BatchNorm is left)."""
    out = copy.deepcopy(model).eval()
    for mod in out.modules():
        if isinstance(mod, _ConvBN) and isinstance(mod[1], nn.BatchNorm2d):
            mod[0] = fuse_conv_bn_eval(mod[0], mod[1])
            mod[1] = nn.Identity()
    return out


def parameter_bytes(model: nn.Module, bytes_per_value: int = 2) -> int:
    """Size of the weights and buffers at ``bytes_per_value`` (2: fp16)."""
    return sum(t.numel() for t in model.state_dict().values()) * bytes_per_value


# --------------------------------------------------------------------------------------------------------------
# Boxes: IoU, NMS, targets and decoding
# --------------------------------------------------------------------------------------------------------------


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix ``(N, M)`` of boxes ``(N, 4)`` and ``(M, 4)`` as ``x0, y0, x1, y1``."""
    lo = torch.maximum(a[:, None, :2], b[None, :, :2])
    hi = torch.minimum(a[:, None, 2:4], b[None, :, 2:4])
    inter = (hi - lo).clamp(min=0).prod(-1)
    area_a = (a[:, 2:4] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:4] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-9)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first."""
    order = scores.argsort(descending=True)
    if len(order) == 0:
        return order
    overlap = box_iou(boxes[order], boxes[order]) > iou
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            keep[i + 1 :] &= ~overlap[i, i + 1 :]
    return order[keep]


@dataclass
class Targets:
    """Training targets of a batch at the output stride: ``heat`` ``(B, 1, h, w)`` (Gaussian peaks, 1 at each
    face's centre cell), ``weight`` ``(B, 1, h, w)`` (0 inside ignored boxes), ``size``/``offset`` ``(B, 2, h, w)``
    and ``mask`` ``(B, 1, h, w)`` (1 at the centre cells, where size and offset are supervised)."""

    heat: torch.Tensor
    weight: torch.Tensor
    size: torch.Tensor
    offset: torch.Tensor
    mask: torch.Tensor


class CenterCodec:
    """Boxes <-> the detector's maps at one stride."""

    def __init__(self, cfg: FaceDetectorConfig) -> None:
        self.stride = cfg.stride
        self.size_ref = cfg.size_ref

    def sigma(self, w: float, h: float) -> float:
        """Gaussian radius (cells) of a face's centre peak: 0.3 + 0.08 x its size in cells."""
        return 0.3 + 0.08 * math.sqrt(max(w * h, 1e-6)) / self.stride

    def encode(
        self,
        boxes: list[torch.Tensor],
        height: int,
        width: int,
        ignore: list[torch.Tensor] | None = None,
    ) -> Targets:
        """Targets of images ``height`` x ``width`` px with ``boxes[i]`` ``(N, 4)`` faces (centres outside the image
        are skipped) and ``ignore[i]`` ``(M, 4)`` regions where no heatmap loss is taken."""
        s = self.stride
        h, w = height // s, width // s
        b = len(boxes)
        heat = torch.zeros(b, 1, h, w)
        weight = torch.ones(b, 1, h, w)
        size = torch.zeros(b, 2, h, w)
        offset = torch.zeros(b, 2, h, w)
        mask = torch.zeros(b, 1, h, w)
        ys = torch.arange(h, dtype=torch.float32)[:, None] + 0.5
        xs = torch.arange(w, dtype=torch.float32)[None, :] + 0.5
        for i in range(b):
            for x0, y0, x1, y1 in ignore[i].tolist() if ignore is not None else []:
                r0, r1 = max(0, int(y0 // s)), max(0, math.ceil(y1 / s))
                c0, c1 = max(0, int(x0 // s)), max(0, math.ceil(x1 / s))
                weight[i, 0, r0:r1, c0:c1] = 0
            for x0, y0, x1, y1 in boxes[i].tolist():
                cx, cy = (x0 + x1) / 2 / s, (y0 + y1) / 2 / s
                j, k = int(math.floor(cx)), int(math.floor(cy))
                if not (0 <= j < w and 0 <= k < h):
                    continue
                sg = self.sigma(x1 - x0, y1 - y0)
                g = torch.exp(-((xs - (j + 0.5)) ** 2 + (ys - (k + 0.5)) ** 2) / (2 * sg * sg))
                heat[i, 0] = torch.maximum(heat[i, 0], g)
                heat[i, 0, k, j] = 1.0
                size[i, :, k, j] = torch.tensor([x1 - x0, y1 - y0]).clamp(min=1e-3).div(self.size_ref).log()
                offset[i, :, k, j] = torch.tensor([cx - j, cy - k])
                mask[i, 0, k, j] = 1.0
        weight = torch.maximum(weight, (heat > 0.05).float())  # a face's own peak is never ignored
        return Targets(heat, weight, size, offset, mask)

    def decode(
        self,
        heat: torch.Tensor,
        size: torch.Tensor,
        offset: torch.Tensor,
        threshold: float,
        top_k: int = 300,
    ) -> list[torch.Tensor]:
        """Per image ``(N, 5)`` boxes ``x0, y0, x1, y1, score``: the cells whose score (``heat`` as
        probabilities, ``(B, 1, h, w)``) is at least ``threshold`` and the maximum of its 3x3 neighbourhood, at
        most ``top_k`` of them, best first (no NMS here)."""
        peaks = heat == F.max_pool2d(heat, 3, 1, 1)
        out = []
        for i in range(heat.shape[0]):
            sc = torch.where(peaks[i, 0] & (heat[i, 0] >= threshold), heat[i, 0], torch.zeros_like(heat[i, 0]))
            flat = sc.reshape(-1)
            k = min(top_k, int((flat > 0).sum()))
            val, idx = flat.topk(k)
            wdt = heat.shape[-1]
            yy, xx = (idx // wdt), (idx % wdt)
            cx = (xx.float() + offset[i, 0, yy, xx]) * self.stride
            cy = (yy.float() + offset[i, 1, yy, xx]) * self.stride
            bw = torch.exp(size[i, 0, yy, xx]) * self.size_ref
            bh = torch.exp(size[i, 1, yy, xx]) * self.size_ref
            out.append(torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2, val], 1))
        return out


# --------------------------------------------------------------------------------------------------------------
# Whole photos: pyramid, tiles, merge
# --------------------------------------------------------------------------------------------------------------


@dataclass
class DetectSettings:
    """How :func:`detect` covers a photo: levels 1, 1/2, 1/4, ... (a level also finds faces up to
    ``max_face`` of its pixels; levels after the first keep faces of at least ``keep_above`` x max_face of
    theirs), tiles of at most ``tile`` px side, and at most ``max_pixels`` at the first level (a larger photo is
    first reduced, which raises the smallest face found). ``border``: pixels of the photo's mean colour added
    around a small photo (smaller side at most ``border_max_side``: one that is likely a face thumbnail) first,
    so that a face filling it has surround to be found in; larger photos are left as they are, because the
    detector was trained to find faces cut by a photo's edge, and a frame hides that cut
    (benchmarks/RESULTS.md, "Face detection")."""

    threshold: float = 0.4
    nms_iou: float = 0.4
    keep_above: float = 0.45
    tile: int = 1024
    max_pixels: int = 16_000_000
    top_k: int = 300
    max_levels: int = 8
    # chosen on LFW-like thumbnails of training-side faces: Helen train (benchmarks/face_detection.py --only border)
    # and the detector's validation identities (benchmarks/detector_val.py), never on LFW
    border: int = 16
    border_max_side: int = 128
    # ``upsample`` > 1: one more level, the photo enlarged by that factor (bicubic), which keeps only faces whose
    # larger side is below ``upsample_below`` px of the photo and whose score reaches ``upsample_threshold`` (or
    # ``threshold`` if higher): the smallest faces seen at a size the network finds more reliably (skipped where
    # the enlarged photo would pass ``max_pixels``); 1: no such level
    upsample: float = 1.0
    upsample_below: float = 20.0
    upsample_threshold: float = 0.0


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph)) if ph or pw else x


@torch.inference_mode()
def run_level(model: FaceDetector, codec: CenterCodec, image: torch.Tensor, settings: DetectSettings) -> torch.Tensor:
    """``(N, 5)`` boxes of one ``(3, H, W)`` image in [0, 1] at its own scale, tile by tile."""
    cfg = model.cfg
    h, w = image.shape[-2:]
    tile = max(settings.tile, 4 * cfg.max_stride)
    overlap = int(math.ceil(1.5 * cfg.max_face / cfg.max_stride)) * cfg.max_stride
    step = max(tile - overlap, cfg.max_stride)
    ys = [0] if h <= tile else list(range(0, h - overlap, step))
    xs = [0] if w <= tile else list(range(0, w - overlap, step))
    found = []
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            part = _pad_to(image[None, :, y0:y1, x0:x1], cfg.max_stride)
            out = model(part)
            boxes = codec.decode(out.heat.sigmoid(), out.size, out.offset, settings.threshold, settings.top_k)[0]
            # a tile keeps the centres in its own share of the overlap, and none in the padding
            cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
            lo_x, lo_y = (0 if x0 == 0 else overlap / 2), (0 if y0 == 0 else overlap / 2)
            hi_x = (x1 - x0) - (0 if x1 == w else overlap / 2)
            hi_y = (y1 - y0) - (0 if y1 == h else overlap / 2)
            boxes = boxes[(cx >= lo_x) & (cx < hi_x) & (cy >= lo_y) & (cy < hi_y)]
            boxes[:, [0, 2]] += x0
            boxes[:, [1, 3]] += y0
            found.append(boxes)
    return torch.cat(found) if found else torch.zeros(0, 5)


def pyramid_scales(width: int, height: int, cfg: FaceDetectorConfig, settings: DetectSettings) -> list[float]:
    """The scales at which :func:`detect` runs the network: ``s0, s0/2, ...`` (``s0`` = 1, or less for photos
    above ``max_pixels``) while a level can still hold a face it keeps."""
    s0 = min(1.0, math.sqrt(settings.max_pixels / max(width * height, 1)))
    scales = [s0]
    while len(scales) < settings.max_levels:
        s = scales[-1] / 2
        if settings.keep_above * cfg.max_face > s * max(width, height) or min(width, height) * s < 8:
            break
        scales.append(s)
    return scales


def _resize(image: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return image
    h, w = image.shape[-2:]
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


@torch.inference_mode()
def detect_levels(
    model: FaceDetector, image: torch.Tensor, settings: DetectSettings | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two parts :func:`detect` merges, each ``(N, 5)`` in the image's pixels, scores of at least
    ``settings.threshold``, before the cross-level NMS: the pyramid's boxes and the enlarged level's (empty
    without ``settings.upsample``). Kept apart so that a benchmark can read every pair of thresholds from one pass
    (:func:`merge_levels`)."""
    settings = settings or DetectSettings(model.cfg.threshold, model.cfg.nms_iou)
    codec = CenterCodec(model.cfg)
    b = settings.border if min(image.shape[-2:]) <= settings.border_max_side else 0
    if b > 0:
        fill = image.mean((1, 2), keepdim=True)
        framed = fill.expand(-1, image.shape[1] + 2 * b, image.shape[2] + 2 * b).clone()
        framed[:, b:-b, b:-b] = image
        image = framed
    h, w = image.shape[-2:]
    found = []
    for k, s in enumerate(pyramid_scales(w, h, model.cfg, settings)):
        level = _resize(image, s)
        sy, sx = level.shape[-2] / h, level.shape[-1] / w
        boxes = run_level(model, codec, level, settings)
        if k > 0 and len(boxes):
            side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
            boxes = boxes[side >= settings.keep_above * model.cfg.max_face]
        boxes = boxes.clone()
        boxes[:, [0, 2]] /= sx
        boxes[:, [1, 3]] /= sy
        found.append(boxes)
    small = torch.zeros(0, 5)
    up = settings.upsample
    if up > 1 and h * w * up * up <= settings.max_pixels:
        size = (round(h * up), round(w * up))
        big = F.interpolate(image[None], size=size, mode="bicubic", align_corners=False)[0].clamp(0, 1)
        small = run_level(model, codec, big, settings).clone()
        small[:, [0, 2]] *= w / size[1]
        small[:, [1, 3]] *= h / size[0]
        side = torch.maximum(small[:, 2] - small[:, 0], small[:, 3] - small[:, 1])
        small = small[side < settings.upsample_below]
    pyramid = torch.cat(found) if found else torch.zeros(0, 5)
    for part in (pyramid, small):
        part[:, :4] -= b
    return pyramid, small


def merge_levels(
    pyramid: torch.Tensor, small: torch.Tensor, threshold: float, upsample_threshold: float, nms_iou: float
) -> torch.Tensor:
    """The parts of :func:`detect_levels` at their own score thresholds, merged by NMS, best first."""
    allb = torch.cat([pyramid[pyramid[:, 4] >= threshold], small[small[:, 4] >= upsample_threshold]])
    return allb[nms(allb[:, :4], allb[:, 4], nms_iou)]


@torch.inference_mode()
def detect(model: FaceDetector, image: torch.Tensor, settings: DetectSettings | None = None) -> torch.Tensor:
    """``(N, 5)`` face boxes ``x0, y0, x1, y1, score`` of a ``(3, H, W)`` image in [0, 1], in its pixels, best
    first: every pyramid level (tiled) and the optional enlarged level (kept from ``upsample_threshold``), merged
    by NMS."""
    settings = settings or DetectSettings(model.cfg.threshold, model.cfg.nms_iou)
    pyramid, small = detect_levels(model, image, settings)
    up_t = max(settings.threshold, settings.upsample_threshold)
    return merge_levels(pyramid, small, settings.threshold, up_t, settings.nms_iou)
