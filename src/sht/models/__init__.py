"""Networks of the method: DHLN (with SHN and FHS as its one-stream variants), FPTN with its discriminators and
the VGG-19 conv1_2 feature extractor of its perceptual loss.

Names are resolved lazily (PEP 562): ``from sht.models import DHLN`` loads ``models.dhln`` only, so inference
never imports the training-only networks (FPTN, D_A/D_S, VGG)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .dhln import DHLN, DHLNOutput, FUBlock1, FUBlock2, count_parameters
    from .discriminators import AppearanceDiscriminator, PatchDiscriminator, ShapeDiscriminator
    from .fptn import FPTN, PATBlock, make_norm
    from .vgg import VGG19Conv12

_WHERE = {
    "DHLN": "dhln",
    "DHLNOutput": "dhln",
    "FUBlock1": "dhln",
    "FUBlock2": "dhln",
    "count_parameters": "dhln",
    "FPTN": "fptn",
    "PATBlock": "fptn",
    "make_norm": "fptn",
    "PatchDiscriminator": "discriminators",
    "AppearanceDiscriminator": "discriminators",
    "ShapeDiscriminator": "discriminators",
    "VGG19Conv12": "vgg",
}

__all__ = [
    "DHLN",
    "DHLNOutput",
    "FUBlock1",
    "FUBlock2",
    "count_parameters",
    "FPTN",
    "PATBlock",
    "make_norm",
    "PatchDiscriminator",
    "AppearanceDiscriminator",
    "ShapeDiscriminator",
    "VGG19Conv12",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'sht.models' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
