"""Checkpoints: one safetensors file per checkpoint, written atomically (temporary file + rename).

Tensors: ``<module>.<param>`` for every named module and ``optim/<name>/<param index>/<key>`` for optimiser
state. The safetensors metadata holds a JSON document with the format version, the full config, the step,
optimiser hyper-parameters, scheduler and AMP-scaler state and anything else the trainer records; the same JSON is
written beside the file (``.json``) for people to read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import CheckpointError

FORMAT = "sht-checkpoint"
FORMAT_VERSION = 1


def _optim_tensors(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"optim/{name}/{pid}/{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _restore_optim(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim/{name}/"
    for key, val in tensors.items():
        if key.startswith(prefix):
            pid, k = key[len(prefix) :].split("/", 1)
            state.setdefault(int(pid), {})[k] = val
    for pid, d in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(d)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    state: dict[str, Any] | None = None,
) -> Path:
    """Write modules, optimisers and a JSON-able ``state`` to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for mname, mod in modules.items():
        for k, v in mod.state_dict().items():
            tensors[f"{mname}.{k}"] = v.detach().cpu().contiguous()
    optim_meta = {}
    for oname, opt in (optimizers or {}).items():
        t, m = _optim_tensors(oname, opt)
        tensors.update(t)
        optim_meta[oname] = m
    doc = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "modules": sorted(modules),
        "optimizers": optim_meta,
        **(state or {}),
    }
    text = json.dumps(doc, default=_json_default)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"sht": text})
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    side = path.with_suffix(".json")
    tmpj = side.with_name(f".{side.name}.tmp{os.getpid()}")
    tmpj.write_text(json.dumps({k: v for k, v in doc.items() if k != "optimizers"}, indent=1, default=_json_default))
    os.replace(tmpj, side)
    return path


def _json_default(o: Any) -> Any:
    if torch.is_tensor(o):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and the JSON document of a checkpoint, refusing foreign or newer files with a clear error."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        from safetensors import safe_open

        with safe_open(str(p), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(p))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{p}: not a readable safetensors checkpoint ({str(exc)[:100]})") from None
    if "sht" not in meta:
        raise CheckpointError(f"{p}: a safetensors file without sht metadata (not written by sht)")
    doc = json.loads(meta["sht"])
    if doc.get("format") != FORMAT:
        raise CheckpointError(f"{p}: unknown checkpoint format {doc.get('format')!r}")
    if int(doc.get("version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: checkpoint format version {doc['version']} is newer than this sht understands ({FORMAT_VERSION});"
            " upgrade sht"
        )
    return tensors, doc


def load_module(
    module: nn.Module,
    tensors: dict[str, torch.Tensor],
    name: str,
    where: str = "checkpoint",
    skip: Sequence[str] = (),
) -> None:
    """Load ``name.*`` tensors into ``module``; shape or key mismatches raise :class:`CheckpointError`. Keys under a
    ``skip`` prefix (``sr_tail`` for ``sr_tail.*``) are left as they are, on both sides."""
    prefix = name + "."
    sd = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not sd:
        raise CheckpointError(f"{where}: holds no weights for {name!r}")
    own = module.state_dict()
    if skip:
        unknown = [s for s in skip if not any(k == s or k.startswith(s + ".") for k in own)]
        if unknown:
            raise CheckpointError(f"{where}: {name!r} has no module {unknown[0]!r} to skip")
        kept = [k for k in own if not any(k == s or k.startswith(s + ".") for s in skip)]
        own = {k: own[k] for k in kept}
        sd = {k: v for k, v in sd.items() if not any(k == s or k.startswith(s + ".") for s in skip)}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad = [k for k in own if k in sd and own[k].shape != sd[k].shape]
    if missing or unexpected or bad:
        detail = (f"missing {missing[:3]}" if missing else "") + (f" unexpected {unexpected[:3]}" if unexpected else "")
        detail += f" shape mismatch {bad[:3]}" if bad else ""
        raise CheckpointError(f"{where}: weights for {name!r} do not fit the configured model ({detail.strip()})")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=not skip)


def load_checkpoint(
    path: str | Path,
    modules: dict[str, nn.Module],
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    skip: Sequence[str] = (),
) -> dict[str, Any]:
    """Restore modules (and optimisers when given) from ``path``; returns the JSON document. ``skip``: module
    prefixes left as they are (:func:`load_module`)."""
    tensors, doc = read_checkpoint(path)
    for name, mod in modules.items():
        load_module(mod, tensors, name, str(path), skip)
    for name, opt in (optimizers or {}).items():
        meta = doc.get("optimizers", {}).get(name)
        if meta is None:
            raise CheckpointError(f"{path}: holds no optimiser state for {name!r}")
        _restore_optim(name, opt, tensors, meta)
    return doc
