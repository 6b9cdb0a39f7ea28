"""The low-resolution evaluation protocol, shared by training, ``sht evaluate``, the benchmark and the demo.

Canonical HR crop (128 px) -> bicubic LR of ``s`` px (8-bit) -> bicubic to the network input. Landmarks are
scored by NME (inter-ocular by default) with AUC/FR at 10 %; hallucinated faces, rounded to 8 bits like a saved
image, by PSNR/SSIM on the BT.601 Y channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from . import metrics
from .data import degradation
from .data.dataset import BatchBuilder, FaceSet
from .data.heatmaps import HeatmapCodec
from .models import DHLN


@dataclass
class SizeResult:
    """Per-image results at one LR size (arrays are None where a method does not produce that output)."""

    lr_size: int
    nme: np.ndarray | None = None
    psnr: np.ndarray | None = None
    ssim: np.ndarray | None = None
    points: np.ndarray | None = None

    def summary(self, threshold: float = 0.10) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.nme is not None:
            out["nme"] = float(np.mean(self.nme)) * 100
            out["fr"] = metrics.failure_rate(self.nme, threshold) * 100
            out["auc"] = metrics.auc(self.nme, threshold)
            out["n"] = float(len(self.nme))
        if self.psnr is not None and self.ssim is not None:
            out["psnr"] = float(np.mean(self.psnr))
            out["ssim"] = float(np.mean(self.ssim))
            out["n"] = float(len(self.psnr))
        return out


@torch.inference_mode()
def predict(
    model: DHLN,
    inputs: torch.Tensor,
    codec: HeatmapCodec,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    base: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Landmarks ``(N, K, 2)`` in face pixels and faces ``(N, 3, F, F)`` (8-bit rounded) for network inputs (and
    their bicubic faces ``base``, see :class:`~sht.models.DHLN`)."""
    model.eval()
    pts, faces = [], []
    for i in range(0, inputs.shape[0], batch_size):
        b = base[i : i + batch_size].to(device) if base is not None else None
        out = model(inputs[i : i + batch_size].to(device), b)
        if out.heatmaps:
            pts.append((out.points if out.points is not None else codec.decode(out.final_heatmaps)[0]).cpu())
        if out.face is not None:
            faces.append(degradation.quantize(out.face.float()).cpu())
    return (torch.cat(pts) if pts else None), (torch.cat(faces) if faces else None)


def _landmark_nme(pred: torch.Tensor, gt: torch.Tensor, norm: str, faces: FaceSet, index: torch.Tensor) -> np.ndarray:
    """Per-image NME with the dataset's visibility and boxes (when it has them) for the faces at ``index``."""
    boxes = faces.canonical_boxes()
    return metrics.nme(
        pred.double().numpy(),
        gt.double().numpy(),
        norm=norm,
        boxes=None if boxes is None else boxes[index].numpy(),
        visible=None if faces.visible is None else faces.visible[index].numpy(),
    )


def evaluate_model(
    model: DHLN,
    faces: FaceSet,
    codec: HeatmapCodec,
    lr_sizes: Sequence[int],
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    norm: str = "inter_ocular",
) -> dict[int, SizeResult]:
    """Score ``model`` on every canonical face of ``faces`` at each LR size."""
    builder = BatchBuilder(faces, model.cfg.input_size, codec, lr_sizes)
    index = torch.arange(len(faces))
    results = {}
    for s in lr_sizes:
        res = SizeResult(int(s))
        for i in range(0, len(faces), 256):
            batch = builder.build(index[i : i + 256], lr_size=int(s))
            pts, out = predict(model, batch.input, codec, batch_size, device, batch.base)
            if pts is not None:
                n = _landmark_nme(pts, batch.points, norm, faces, index[i : i + 256])
                res.nme = n if res.nme is None else np.concatenate([res.nme, n])
                p = pts.numpy()
                res.points = p if res.points is None else np.concatenate([res.points, p])
            if out is not None:
                ps, ss = metrics.psnr_y(out, batch.hr), metrics.ssim_y(out, batch.hr)
                res.psnr = ps if res.psnr is None else np.concatenate([res.psnr, ps])
                res.ssim = ss if res.ssim is None else np.concatenate([res.ssim, ss])
        results[int(s)] = res
    return results


def evaluate_bicubic(faces: FaceSet, lr_sizes: Sequence[int]) -> dict[int, SizeResult]:
    """PSNR/SSIM of bicubic upsampling of the LR face back to the HR size (the SR baseline)."""
    builder = BatchBuilder(faces, 8, HeatmapCodec(faces.size, 8, 1.0), lr_sizes)
    index = torch.arange(len(faces))
    results = {}
    for s in lr_sizes:
        res = SizeResult(int(s))
        ps, ss = [], []
        for i in range(0, len(faces), 256):
            batch = builder.build(index[i : i + 256], lr_size=int(s))
            up = degradation.quantize(batch.base)
            ps.append(metrics.psnr_y(up, batch.hr))
            ss.append(metrics.ssim_y(up, batch.hr))
        res.psnr, res.ssim = np.concatenate(ps), np.concatenate(ss)
        results[int(s)] = res
    return results


def evaluate_dlib(
    faces: FaceSet, lr_sizes: Sequence[int], upsample: int = 1, norm: str = "inter_ocular"
) -> tuple[dict[int, SizeResult], dict[int, float]]:
    """The dlib peer under the same protocol: its 68-point shape predictor on the bicubic-upsampled crop (the 8-bit
    ``base`` face; at ``faces.size`` the HR crop itself, the full-resolution canonical crop), in the box of its own
    HOG detector (``upsample`` times upsampled; the largest face) or the true landmark box when HOG finds nothing.
    Returns the per-size results and the share of crops where HOG found a face. Needs the ``dlib`` extra."""
    from .teacher import DlibTeacher

    teacher = DlibTeacher(upsample)
    builder = BatchBuilder(faces, 8, HeatmapCodec(faces.size, 8, 1.0), [s for s in lr_sizes if s < faces.size] or [8])
    index = torch.arange(len(faces))
    results, found = {}, {}
    for s in lr_sizes:
        preds, hits = [], 0
        gts = []
        for i in range(0, len(faces), 256):
            batch = builder.build(index[i : i + 256], lr_size=int(min(s, faces.size)))
            img = batch.hr if s >= faces.size else degradation.quantize(batch.base)
            arr = (img.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
            assert batch.points is not None
            for a, gt in zip(arr, batch.points.numpy(), strict=True):
                a = np.ascontiguousarray(a)
                boxes = teacher.detector(a, teacher.upsample)
                if len(boxes):
                    hits += 1
                    rect = max(boxes, key=lambda r: r.width() * r.height())
                else:
                    (x0, y0), (x1, y1) = gt.min(0), gt.max(0)
                    rect = teacher.rect(x0, y0, x1, y1)
                preds.append(teacher.points_in(a, rect))
            gts.append(batch.points)
        pred = torch.from_numpy(np.stack(preds))
        n = _landmark_nme(pred, torch.cat(gts), norm, faces, index)
        results[int(s)] = SizeResult(int(s), nme=n, points=pred.numpy())
        found[int(s)] = hits / max(1, len(faces))
    return results, found


def evaluate_mean_shape(
    faces: FaceSet, shape: np.ndarray, lr_sizes: Sequence[int], norm: str = "inter_ocular"
) -> dict[int, SizeResult]:
    """NME of predicting the same (training-set mean) shape for every face: the landmark floor baseline."""
    gt = faces.canonical_points()
    pred = torch.from_numpy(np.asarray(shape, dtype=np.float64)).expand_as(gt)
    n = _landmark_nme(pred, gt, norm, faces, torch.arange(len(faces)))
    return {int(s): SizeResult(int(s), nme=n, points=pred.numpy()) for s in lr_sizes}


def load_eval_faces(
    sources: Sequence[str], size: int, margin: float = 1.3, limit: int = 0, cache_dir: str | None = None
) -> FaceSet:
    """Canonical crops of labeled folders (no context needed: evaluation never augments)."""
    from .data.dataset import load_sources

    faces = load_sources(list(sources), size, margin, 1.0, cache_dir=cache_dir)
    if limit and len(faces) > limit:
        faces = faces.subset(range(limit))
    return faces


def default_norm(source: str) -> str:
    """The literature's headline NME normaliser for a ``NAME:ROOT:SPLIT`` dataset source, else inter-ocular."""
    from .data.datasets import LOADERS, parse_source

    if source.split(":", 1)[0] in LOADERS and source.count(":") >= 2:
        return parse_source(source)[3].norms[0]
    return "inter_ocular"


def face_panels(
    model: DHLN,
    faces: FaceSet,
    codec: HeatmapCodec,
    lr_size: int,
    count: int = 6,
    device: torch.device | str = "cpu",
) -> list[list]:
    """Rows of LR | bicubic | hallucinated face with predicted (green) and true (red) landmarks | HR."""
    from .data.transforms import tensor_to_image
    from .report import draw_landmarks

    builder = BatchBuilder(faces, model.cfg.input_size, codec, [lr_size])
    idx = torch.linspace(0, len(faces) - 1, min(count, len(faces))).round().long()
    batch = builder.build(idx, lr_size=lr_size)
    pts, out = predict(model, batch.input, codec, device=device, base=batch.base)
    lr = degradation.downsample(batch.hr, lr_size)
    bic = degradation.quantize(batch.base)
    rows = []
    for i in range(len(idx)):
        shown = out[i] if out is not None else bic[i]
        rows.append(
            [
                tensor_to_image(lr[i]),
                tensor_to_image(bic[i]),
                draw_landmarks(
                    tensor_to_image(shown),
                    pts[i].numpy() if pts is not None else None,
                    gt=batch.points[i].numpy(),
                ),
                tensor_to_image(batch.hr[i]),
            ]
        )
    return rows


def evaluate_checkpoint(
    checkpoint: str,
    data: Sequence[str],
    lr_sizes: Sequence[int],
    out_dir: str | None = None,
    limit: int = 0,
    norm: str = "inter_ocular",
    device: str = "cpu",
) -> str:
    """``sht evaluate``: score a checkpoint and bicubic on labeled folders or dataset splits; returns a markdown
    table and writes ``results.json``, ``ced.png`` and ``faces_<s>.png`` to ``out_dir`` when given. ``norm='auto'``
    takes the headline normaliser of the first dataset source (inter-ocular for plain folders)."""
    import json
    from pathlib import Path

    from .infer import Predictor
    from .report import face_grid, markdown_table, plot_ced

    pred = Predictor.from_checkpoint(checkpoint, device)
    cfg = pred.config
    if norm == "auto":
        norm = default_norm(data[0])
    faces = load_eval_faces(data, cfg.model.face_size, cfg.data.margin, limit)
    res = evaluate_model(pred.model, faces, pred.codec, lr_sizes, device=device, norm=norm)
    bic = evaluate_bicubic(faces, lr_sizes) if cfg.model.has_face else {}
    rows, doc = (
        [],
        {"checkpoint": checkpoint, "data": list(data), "n": len(faces), "norm": norm, "results": {}},
    )
    for s in lr_sizes:
        m = res[s].summary()
        b = bic[s].summary() if s in bic else {}
        doc["results"][str(s)] = {"model": m, "bicubic": b}
        rows.append(
            [
                s,
                f"{m['nme']:.2f}" if "nme" in m else "-",
                f"{m['fr']:.1f}" if "fr" in m else "-",
                f"{m['auc']:.3f}" if "auc" in m else "-",
                f"{m['psnr']:.2f}" if "psnr" in m else "-",
                f"{m['ssim']:.4f}" if "ssim" in m else "-",
                f"{b['psnr']:.2f}" if b else "-",
                f"{b['ssim']:.4f}" if b else "-",
            ]
        )
    table = markdown_table(
        ["LR px", f"NME_{norm} %", "FR10 %", "AUC10", "PSNR_Y", "SSIM_Y", "bicubic PSNR_Y", "bicubic SSIM_Y"],
        rows,
    )
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(doc, indent=1))
        if cfg.model.has_landmarks:
            plot_ced({f"{s} px": res[s].nme for s in lr_sizes}, out / "ced.png", title=Path(checkpoint).name)
        for s in lr_sizes:
            face_grid(
                face_panels(pred.model, faces, pred.codec, s, device=device),
                [f"LR {s}px", "bicubic", "output", "HR"],
                out / f"faces_{s}.png",
            )
        (out / "results.md").write_text(table + "\n")
    return f"{len(faces)} faces from {', '.join(data)}\n{table}"
