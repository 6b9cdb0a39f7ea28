"""VGG-19 ``conv1_2`` features, the ``phi`` of FPTN's perceptual loss (paper Eq. 8).

The weights are ImageNet VGG-19 ``block1_conv1``/``block1_conv2`` in the original Caffe convention (BGR input,
0-255, minus the per-channel mean, no std division), stored OIHW float32 in an ``.npz`` with the names in
:data:`ARRAYS`. They are never replaced by random weights: a missing or malformed file raises.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ARRAYS: dict[str, tuple[int, ...]] = {
    "block1_conv1.weight": (64, 3, 3, 3),
    "block1_conv1.bias": (64,),
    "block1_conv2.weight": (64, 64, 3, 3),
    "block1_conv2.bias": (64,),
}
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_HELP = (
    "the VGG-19 conv1_2 weights are needed for FPTN's perceptual loss (paper Eq. 8): provide an .npz with "
    f"arrays {', '.join(f'{k} {v}' for k, v in ARRAYS.items())} (OIHW float32, Caffe BGR convention), e.g. "
    "any ImageNet VGG-19 block1_conv1/block1_conv2 weights converted to this layout, and set its path as the "
    "config key fptn.vgg_weights"
)

ArrayLike = np.ndarray | torch.Tensor


def _check(arrays: dict[str, ArrayLike], source: str) -> dict[str, torch.Tensor]:
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise ValueError(f"{source}: missing VGG-19 arrays {missing}; found {sorted(arrays)}")
    out: dict[str, torch.Tensor] = {}
    for name, shape in ARRAYS.items():
        t = torch.as_tensor(arrays[name])
        if tuple(t.shape) != shape:
            raise ValueError(f"{source}: array {name} has shape {tuple(t.shape)}, expected {shape}")
        if not t.is_floating_point():
            raise ValueError(f"{source}: array {name} has dtype {t.dtype}, expected float32")
        t = t.detach().to(torch.float32).clone()
        if not torch.isfinite(t).all():
            raise ValueError(f"{source}: array {name} contains NaN or infinite values")
        out[name] = t
    return out


class VGG19Conv12(nn.Module):
    """Frozen ImageNet VGG-19 up to ``relu1_2``: conv3x3 (3 -> 64) - ReLU - conv3x3 (64 -> 64) - ReLU.

    ``forward(x)``: ``x`` is RGB in [0, 1], ``(B, 3, H, W)``; returns ``(B, 64, H, W)``. Build it with
    :meth:`from_npz` (a weights file) or :meth:`from_arrays`; it always stays in eval mode with frozen parameters
    (gradients still flow to the input)."""

    def __init__(self, w1: ArrayLike, b1: ArrayLike, w2: ArrayLike, b2: ArrayLike, source: str = "arrays") -> None:
        super().__init__()
        names = list(ARRAYS)
        arrays = _check(dict(zip(names, (w1, b1, w2, b2), strict=True)), source)
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1)
        with torch.no_grad():
            self.conv1.weight.copy_(arrays[names[0]])
            self.conv1.bias.copy_(arrays[names[1]])
            self.conv2.weight.copy_(arrays[names[2]])
            self.conv2.bias.copy_(arrays[names[3]])
        self.register_buffer("mean_bgr", torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1), persistent=False)
        self.source = source
        self.requires_grad_(False)
        self.train(False)

    @classmethod
    def from_arrays(cls, w1: ArrayLike, b1: ArrayLike, w2: ArrayLike, b2: ArrayLike) -> VGG19Conv12:
        """Build from the four arrays (conv1 weight/bias, conv2 weight/bias; OIHW, Caffe BGR convention)."""
        return cls(w1, b1, w2, b2)

    @classmethod
    def from_npz(cls, path: str | Path) -> VGG19Conv12:
        """Load ``path`` (the layout of :data:`ARRAYS`); raises FileNotFoundError/ValueError naming the path."""
        if str(path).strip() == "":
            raise FileNotFoundError(f"no VGG-19 weights file configured (fptn.vgg_weights is empty): {_HELP}")
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"VGG-19 weights file not found: {p}; {_HELP}")
        try:
            data = np.load(p, allow_pickle=False)
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive of named arrays")
            with data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{p}: not a readable .npz of VGG-19 weights ({exc})") from None
        checked = _check(arrays, str(p))
        return cls(*(checked[k] for k in ARRAYS), source=str(p))

    def arrays(self) -> dict[str, np.ndarray]:
        """The four arrays by name (float32, OIHW)."""
        tensors = (self.conv1.weight, self.conv1.bias, self.conv2.weight, self.conv2.bias)
        return {k: t.detach().cpu().numpy().astype(np.float32) for k, t in zip(ARRAYS, tensors, strict=True)}

    def save_npz(self, path: str | Path) -> None:
        """Write the weights in the layout :meth:`from_npz` reads (exactly at ``path``, no suffix added)."""
        with open(path, "wb") as fh:
            np.savez(fh, **self.arrays())

    def train(self, mode: bool = True) -> VGG19Conv12:
        """Always eval: the feature extractor is fixed."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bgr = x[:, [2, 1, 0]] * 255.0 - self.mean_bgr
        return F.relu(self.conv2(F.relu(self.conv1(bgr))))
