"""ONNX graphs of a DHLN (or JASRNet), in memory or cached on disk, and the ONNX Runtime backend of
:class:`sht.infer.Predictor` (``backend="onnx"``; the optional ``export`` extra: ``pip install 'sht[export]'``).

Two graphs per model: landmarks only (``heatmaps``; the SR tail and the global residual are not in it) and with
the face (``heatmaps``, ``face``), each built on first use. ONNX Runtime runs every node of a graph whatever
outputs are asked for, so one graph with both outputs would always pay for the face (benchmarks/RESULTS.md).
The heatmaps are decoded by the shared torch code (:class:`sht.data.heatmaps.HeatmapCodec`); a GHCU
(:class:`sht.models.ghcu.CorrectedModel`) corrects them in torch after the graph, as it does after the network.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConfigError
from .models.dhln import DHLNOutput
from .models.ghcu import CorrectedModel

OPSET = 17


class _Outputs(nn.Module):
    """A DHLN / JASRNet with plain tensor outputs: final heatmaps and, with ``face``, the hallucinated face."""

    def __init__(self, model: nn.Module, face: bool) -> None:
        super().__init__()
        self.model, self.face = model, face

    def forward(self, x: torch.Tensor, base: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(x, base, face=self.face)
        res: list[torch.Tensor] = []
        if out.heatmaps:
            res.append(out.final_heatmaps)
        if out.face is not None:
            res.append(out.face)
        return tuple(res)


def backbone_of(model: nn.Module) -> nn.Module:
    """The network a graph holds: the model itself, or the landmark network under a GHCU."""
    return model.backbone if isinstance(model, CorrectedModel) else model


def output_names(model: nn.Module, face: bool = True) -> list[str]:
    m = backbone_of(model).cfg
    return (["heatmaps"] if m.has_landmarks else []) + (["face"] if m.has_face and face else [])


def onnx_graph(model: nn.Module, out: str | Path | None = None, face: bool = True, opset: int = OPSET) -> bytes | Path:
    """``torch.onnx.export`` (TorchScript exporter) of ``model`` (its backbone under a GHCU) with a dynamic batch:
    inputs ``input`` ``(B, 3, S, S)`` and, with ``face`` (DHLN with the global residual), ``base`` ``(B, 3, F, F)``;
    outputs :func:`output_names`. Written to ``out`` (returned) or, when ``out`` is None, returned as bytes."""
    net = backbone_of(model).eval()
    m = net.cfg
    names = output_names(net, face)
    if not names:
        raise ConfigError(f"a {m.streams.upper()} model has no {'outputs' if face else 'landmarks'} to export")
    wrapper = _Outputs(net, face).eval()  # the exporter restores the wrapper's mode, recursively, afterwards
    p = next(net.parameters())
    args: tuple[torch.Tensor, ...] = (torch.rand(2, 3, m.input_size, m.input_size, device=p.device),)
    inputs = ["input"]
    if face:
        args += (torch.rand(2, 3, m.face_size, m.face_size, device=p.device),)
        inputs.append("base")
    target: Any = io.BytesIO() if out is None else Path(out)
    if out is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():  # the TorchScript exporter needs no onnxscript: noise
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            args,
            target if out is None else str(target),
            input_names=inputs,
            output_names=names,
            dynamic_axes={n: {0: "batch"} for n in inputs + names},
            opset_version=opset,
            dynamo=False,
        )
    return target.getvalue() if out is None else target


def cached_graph(model: nn.Module, cache_dir: str | Path, face: bool = True, opset: int = OPSET) -> Path:
    """:func:`onnx_graph` written once to ``cache_dir``, named by a hash of the weights, config, graph kind, opset
    and torch version (so changed weights never reuse a stale graph)."""
    net = backbone_of(model)
    h = hashlib.sha256(f"{net.cfg!r}|face={face}|opset={opset}|torch={torch.__version__}".encode())
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    path = Path(cache_dir) / f"sht-{h.hexdigest()[:20]}-{'face' if face else 'landmarks'}.onnx"
    if not path.is_file():
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        onnx_graph(net, tmp, face, opset)
        os.replace(tmp, path)
    return path


def import_onnxruntime():  # noqa: ANN201 - the onnxruntime module
    """onnxruntime, or a one-line :class:`ConfigError` naming the extra to install."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError("the onnx backend needs onnxruntime: pip install 'sht[export]'") from None
    return onnxruntime


class OrtBackend:
    """ONNX Runtime (CPU) for a model: ``backend(x, base, face)`` returns the :class:`DHLNOutput` the model would
    (final heatmaps only, GHCU points when present). ``threads``: intra-op threads (0: ONNX Runtime's default,
    one per physical core); ``cache_dir``: keep the graphs there (:func:`cached_graph`) instead of in memory."""

    def __init__(self, model: nn.Module, threads: int = 0, cache_dir: str | Path | None = None) -> None:
        self.ort = import_onnxruntime()
        self.model = model
        self.threads, self.cache_dir = threads, cache_dir
        self._sessions: dict[bool, Any] = {}

    def session(self, face: bool) -> Any:
        """The session of the landmark-only (``face=False``) or the full graph, built on first use."""
        if face not in self._sessions:
            graph = (
                onnx_graph(self.model, face=face)
                if self.cache_dir is None
                else str(cached_graph(self.model, self.cache_dir, face))
            )
            opts = self.ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            self._sessions[face] = self.ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        return self._sessions[face]

    def __call__(self, x: torch.Tensor, base: torch.Tensor | None = None, face: bool = True) -> DHLNOutput:
        sess = self.session(face)
        feeds = {"input": x.float().cpu().contiguous().numpy()}
        if any(i.name == "base" for i in sess.get_inputs()):
            if base is None:
                raise ValueError("this graph needs the bicubic face: pass base")
            feeds["base"] = base.float().cpu().contiguous().numpy()
        res = dict(zip(output_names(self.model, face), sess.run(None, feeds), strict=True))
        hm = [torch.from_numpy(res["heatmaps"])] if "heatmaps" in res else []
        out = DHLNOutput(heatmaps=hm, face=torch.from_numpy(res["face"]) if "face" in res else None)
        return self.model.correct(out) if isinstance(self.model, CorrectedModel) else out
