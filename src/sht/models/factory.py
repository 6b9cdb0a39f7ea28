"""The one place that turns ``model.arch`` into a network (DHLN/SHN/FHS or JASRNet)."""

from __future__ import annotations

from torch import nn

from ..config import ModelConfig


def build_model(cfg: ModelConfig) -> nn.Module:
    """``DHLN`` for ``arch=dhln`` (any ``streams``), ``JASRNet`` for ``arch=jasrnet``; both return a DHLNOutput."""
    if cfg.arch == "jasrnet":
        from .jasrnet import JASRNet

        return JASRNet(cfg)
    from .dhln import DHLN

    return DHLN(cfg)
