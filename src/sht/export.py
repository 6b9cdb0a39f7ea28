"""Export a trained DHLN (never FPTN, which is training-only): compact release weights and ONNX."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from .checkpoint import FORMAT, FORMAT_VERSION, read_checkpoint
from .infer import Predictor
from .models import DHLN


def export_weights(checkpoint: str | Path, out: str | Path, fp16: bool = True, note: str = "") -> Path:
    """DHLN weights of any sht checkpoint (optionally fp16) with its config: a file ``sht.Detector`` loads."""
    tensors, doc = read_checkpoint(checkpoint)
    keep = {k: v for k, v in tensors.items() if k.startswith(("dhln.", "ghcu."))}
    if not keep:
        raise ValueError(f"{checkpoint}: holds no DHLN weights to export")
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


class _OnnxDHLN(nn.Module):
    """DHLN with plain tensor outputs: final heatmaps and the hallucinated face (if any)."""

    def __init__(self, model: DHLN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, base: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x, base)
        res: list[torch.Tensor] = []
        if out.heatmaps:
            res.append(out.final_heatmaps)
        if out.face is not None:
            res.append(out.face)
        return tuple(res)


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = 17) -> Path:
    """ONNX graph of DHLN with a dynamic batch: inputs ``input`` ``(B, 3, S, S)`` and ``base`` ``(B, 3, F, F)``
    (the LR face resized bicubically to the input and to the face size), outputs ``heatmaps`` ``(B, K, S, S)``
    and ``face`` ``(B, 3, F, F)``. JASRNet (``model.arch=jasrnet``) reads only ``input``, already at the face size,
    so its graph has that one input and heatmaps ``(B, K, F/8, F/8)`` without the background channel."""
    pred = Predictor.from_checkpoint(checkpoint, ghcu=False)  # the backbone's outputs; GHCU is not exported
    m = pred.config.model
    wrapper = _OnnxDHLN(pred.model.eval())
    x = torch.rand(2, 3, m.input_size, m.input_size)
    base = torch.rand(2, 3, m.face_size, m.face_size)
    names = (["heatmaps"] if m.has_landmarks else []) + (["face"] if m.has_face else [])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    axes = {n: {0: "batch"} for n in ["input", "base", *names]}
    with warnings.catch_warnings():  # the TorchScript exporter needs no onnxscript; its deprecation is noise
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (x, base),
            str(out),
            input_names=["input", "base"],
            output_names=names,
            dynamic_axes=axes,
            opset_version=opset,
            dynamo=False,
        )
    return out
