"""Networks of the method: DHLN (with SHN and FHS as its one-stream variants)."""

from .dhln import DHLN, DHLNOutput, FUBlock1, FUBlock2, count_parameters

__all__ = ["DHLN", "DHLNOutput", "FUBlock1", "FUBlock2", "count_parameters"]
