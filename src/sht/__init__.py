"""sht: Supervision-by-Hallucination-and-Transfer for low-resolution facial landmark detection."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .infer import Detector, Predictor

__all__ = ["Detector", "Predictor", "__version__"]


def __getattr__(name: str) -> Any:
    """``sht.Detector`` / ``sht.Predictor`` without importing torch at ``import sht``."""
    if name in ("Detector", "Predictor"):
        from . import infer

        return getattr(infer, name)
    raise AttributeError(f"module 'sht' has no attribute {name!r}")
