"""Export a trained DHLN (never FPTN, which is training-only): compact release weights and ONNX; and the face
detector's weights (:func:`export_face_detector`)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from safetensors.torch import save_file

from .checkpoint import FORMAT, FORMAT_VERSION, read_checkpoint
from .infer import Predictor
from .ort import OPSET, onnx_graph


def _write_weights(
    checkpoint: str | Path,
    out: str | Path,
    prefixes: tuple[str, ...],
    what: str,
    fp16: bool,
    note: str,
    model_changes: dict | None = None,
) -> Path:
    """The ``prefixes`` tensors of a checkpoint (optionally fp16) with its config (``model_changes`` applied to its
    ``model`` section), written atomically."""
    tensors, doc = read_checkpoint(checkpoint)
    if model_changes:
        doc["config"] = {**doc["config"], "model": {**doc["config"].get("model", {}), **model_changes}}
    keep = {k: v for k, v in tensors.items() if k.startswith(prefixes)}
    if not keep:
        raise ValueError(f"{checkpoint}: holds no {what} weights to export")
    if fp16:
        keep = {k: v.half() if v.is_floating_point() else v for k, v in keep.items()}
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "modules": sorted({k.split(".", 1)[0] for k in keep}),
        "config": doc["config"],
        "stage": doc.get("stage"),
        "step": doc.get("step"),
        "source": Path(checkpoint).name,
        "dtype": "float16" if fp16 else "float32",
        "note": note,
    }
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}")
    save_file({k: v.contiguous() for k, v in keep.items()}, str(tmp), metadata={"sht": json.dumps(meta)})
    os.replace(tmp, out)
    return out


def export_weights(checkpoint: str | Path, out: str | Path, fp16: bool = True, note: str = "") -> Path:
    """DHLN weights of any sht checkpoint (optionally fp16) with its config: a file ``sht.Detector`` loads; a
    face-detector checkpoint gives the face detector's weights (:func:`export_face_detector`)."""
    _, doc = read_checkpoint(checkpoint)
    if doc.get("stage") == "face_detector" or "detector" in doc.get("modules", []):
        return export_face_detector(checkpoint, out, fp16, note)
    return _write_weights(checkpoint, out, ("dhln.", "ghcu."), "DHLN", fp16, note)


def export_face_detector(
    checkpoint: str | Path,
    out: str | Path,
    fp16: bool = True,
    note: str = "",
    threshold: float | None = None,
    upsample: tuple[float, float, float] | None = None,
) -> Path:
    """The face detector of a ``sht train-detector`` checkpoint (fp16 unless ``fp16=False``) with its config
    (``threshold``: its default score threshold instead of the checkpoint's; ``upsample``: ``(factor, threshold,
    below)`` of the enlarged level for the smallest faces): what ``make_face_detector(PATH)`` loads and what ships as
    ``sht/weights/face-detector.safetensors``."""
    changes: dict = {"threshold": threshold} if threshold is not None else {}
    if upsample is not None:
        changes |= {"upsample": upsample[0], "upsample_threshold": upsample[1], "upsample_below": upsample[2]}
    return _write_weights(checkpoint, out, ("detector.",), "face-detector", fp16, note, changes or None)


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = OPSET, face: bool = True) -> Path:
    """ONNX graph of DHLN with a dynamic batch (:func:`sht.ort.onnx_graph`): inputs ``input`` ``(B, 3, S, S)`` and
    ``base`` ``(B, 3, F, F)`` (the LR face resized bicubically to the input and to the face size), outputs
    ``heatmaps`` ``(B, K, S, S)`` and ``face`` ``(B, 3, F, F)``; ``face=False``: the landmark-only graph (``input``
    -> ``heatmaps``). JASRNet (``model.arch=jasrnet``) reads only ``input``, already at the face size, so its graph
    has that one input and heatmaps ``(B, K, F/8, F/8)`` without the background channel. A GHCU stored with the
    weights is not in the graph (it reads the decoded points; ``Predictor(backend="onnx")`` applies it in torch)."""
    pred = Predictor.from_checkpoint(checkpoint, ghcu=False)
    path = onnx_graph(pred.model, out, face=face, opset=opset)
    assert isinstance(path, Path)
    return path
