"""sht: Supervision-by-Hallucination-and-Transfer for low-resolution facial landmark detection."""

__version__ = "0.1.0"
