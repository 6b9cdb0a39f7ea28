"""Degradation: HR face -> LR face (bicubic) -> network input (the paper resizes 16x16 LR to 64x64).

One implementation serves training, evaluation and ``sht detect``: antialiased bicubic resampling (the same
kernel as PIL's ``BICUBIC`` resize, a = -0.5, widened when downsampling), with LR images rounded to 8 bits as
they would be when stored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bicubic resize of float ``(B, C, H, W)`` to ``size`` x ``size`` (antialiased like PIL; no-op if equal)."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bicubic", antialias=True, align_corners=False)


def quantize(images: torch.Tensor) -> torch.Tensor:
    """Clamp to [0, 1] and round to the nearest 8-bit level, halves up (what saving an image does); dtype kept,
    idempotent."""
    if not torch.is_floating_point(images):
        raise ValueError(f"quantize expects a floating tensor with values in [0, 1], got {images.dtype}")
    return (torch.floor(images.clamp(0, 1) * 255 + 0.5) / 255).to(images.dtype)


def downsample(hr: torch.Tensor, lr_size: int, quantized: bool = True) -> torch.Tensor:
    """HR ``(B, 3, H, H)`` in [0, 1] -> LR ``(B, 3, lr_size, lr_size)``."""
    lr = resize(hr, lr_size)
    return quantize(lr) if quantized else lr.clamp(0, 1)


def to_input(lr: torch.Tensor, input_size: int) -> torch.Tensor:
    """LR image(s) at any size -> the network's input size (bicubic), clamped to [0, 1]."""
    return resize(lr.float(), input_size).clamp(0, 1)


def degrade(
    hr: torch.Tensor, lr_sizes: torch.Tensor | list[int] | int, input_size: int, base_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-sample degradation of an HR batch: bicubic down to each sample's LR size, 8-bit rounding, bicubic to
    ``input_size`` (the network input) and, when ``base_size`` is given, to ``base_size`` (the bicubic face that the
    hallucination stream refines). ``lr_sizes`` is one size or one per sample."""
    b = hr.shape[0]
    sizes = torch.as_tensor([lr_sizes] * b if isinstance(lr_sizes, int) else lr_sizes)
    out = torch.empty(b, hr.shape[1], input_size, input_size, dtype=hr.dtype, device=hr.device)
    base = (
        None
        if base_size is None
        else torch.empty(b, hr.shape[1], base_size, base_size, dtype=hr.dtype, device=hr.device)
    )
    for s in sizes.unique().tolist():
        idx = (sizes == s).nonzero()[:, 0].to(hr.device)
        lr = downsample(hr[idx], int(s))
        out[idx] = to_input(lr, input_size)
        if base is not None:
            base[idx] = to_input(lr, base_size)
    return out, base
