"""Gaussian landmark heatmaps: encoding (differentiable in the points: also the renderer of FPTN's pose inputs),
decoding, differentiable soft-argmax decoders and a first-order translation of heatmaps (one codec object).

Coordinates: landmarks live in an ``image_size`` frame (the HR face crop); heatmap pixel ``(i, j)`` has its
centre at ``(i + 0.5, j + 0.5)`` in heatmap units, and a point ``x`` maps to ``x * heatmap_size / image_size``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ..config import Config

DECODERS = ("argmax", "subpixel")


class HeatmapCodec:
    """Encode points as unnormalised Gaussians (peak 1) and decode heatmaps back to points.

    Decoders: ``argmax`` -- the peak pixel shifted a quarter pixel toward the higher neighbour (Newell et al.);
    ``subpixel`` -- a second-order Taylor step on the log-heatmap around the peak (as in DARK, Zhang et al.
    2020), exact for a clean Gaussian, falling back to the quarter offset where the peak is not concave or lies
    on the border.
    """

    def __init__(self, image_size: int, heatmap_size: int, sigma: float, decoder: str = "subpixel") -> None:
        if decoder not in DECODERS:
            raise ValueError(f"unknown heatmap decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if sigma <= 0:
            raise ValueError(f"heatmap sigma must be positive, got {sigma}")
        self.image_size = image_size
        self.heatmap_size = heatmap_size
        self.sigma = float(sigma)
        self.decoder = decoder

    @classmethod
    def from_config(cls, cfg: Config) -> HeatmapCodec:
        """Heatmaps of the network's heatmap size (``model.heatmap_size``) for landmarks in face (HR) pixels."""
        return cls(cfg.model.face_size, cfg.model.heatmap_size, cfg.heatmap.sigma, cfg.heatmap.decoder)

    @property
    def scale(self) -> float:
        """Heatmap pixels per image pixel."""
        return self.heatmap_size / self.image_size

    def encode(self, points: torch.Tensor, visible: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, K, 2)`` points in image pixels -> ``(B, K, S, S)`` heatmaps (separable Gaussians, no loops).

        Differentiable in ``points``: the same call renders ground-truth heatmaps and, from decoded predictions,
        the pose inputs of FPTN (``sht.fptn_heatmaps=rendered``)."""
        s = self.heatmap_size
        pts = points.to(torch.float32) * self.scale
        grid = torch.arange(s, device=points.device, dtype=torch.float32) + 0.5
        gx = torch.exp(-((grid - pts[..., 0:1]) ** 2) / (2 * self.sigma**2))  # (B, K, S)
        gy = torch.exp(-((grid - pts[..., 1:2]) ** 2) / (2 * self.sigma**2))
        hm = gy.unsqueeze(-1) * gx.unsqueeze(-2)
        if visible is not None:
            hm = hm * visible.to(hm.dtype)[..., None, None]
        return hm

    def decode(self, heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, K, S, S)`` -> (points ``(B, K, 2)`` in image pixels, peak values ``(B, K)``)."""
        hm = heatmaps.detach().to(torch.float32)
        b, k, h, w = hm.shape
        flat = hm.reshape(b, k, -1)
        maxval, idx = flat.max(dim=-1)
        ix = (idx % w).to(torch.long)
        iy = torch.div(idx, w, rounding_mode="floor").to(torch.long)
        pad = F.pad(hm.reshape(b * k, 1, h, w), (1, 1, 1, 1), mode="replicate").reshape(b, k, h + 2, w + 2)

        flat_pad = pad.reshape(b, k, -1)

        def at(dy: int, dx: int) -> torch.Tensor:
            index = (iy + 1 + dy) * (w + 2) + (ix + 1 + dx)
            return flat_pad.gather(-1, index.unsqueeze(-1))[..., 0]

        c, l_, r = at(0, 0), at(0, -1), at(0, 1)
        u, d = at(-1, 0), at(1, 0)
        quarter = torch.stack([torch.sign(r - l_), torch.sign(d - u)], dim=-1) * 0.25
        offset = quarter
        if self.decoder == "subpixel":
            eps = 1e-10
            lc, ll, lr_, lu, ld = (torch.log(v.clamp_min(eps)) for v in (c, l_, r, u, d))
            lul, lur = torch.log(at(-1, -1).clamp_min(eps)), torch.log(at(-1, 1).clamp_min(eps))
            ldl, ldr = torch.log(at(1, -1).clamp_min(eps)), torch.log(at(1, 1).clamp_min(eps))
            dx = 0.5 * (lr_ - ll)
            dy = 0.5 * (ld - lu)
            dxx = lr_ - 2 * lc + ll
            dyy = ld - 2 * lc + lu
            dxy = 0.25 * (ldr - ldl - lur + lul)
            det = dxx * dyy - dxy * dxy
            inner = (ix > 0) & (ix < w - 1) & (iy > 0) & (iy < h - 1)
            ok = (dxx < 0) & (det > 1e-12) & (c > eps) & inner
            safe = torch.where(ok, det, torch.ones_like(det))
            ox = -(dyy * dx - dxy * dy) / safe
            oy = -(dxx * dy - dxy * dx) / safe
            taylor = torch.stack([ox, oy], dim=-1).clamp(-1.0, 1.0)
            offset = torch.where(ok.unsqueeze(-1), taylor, quarter)
        coords = torch.stack([ix, iy], dim=-1).to(torch.float32) + 0.5 + offset
        return coords / self.scale, maxval

    def soft_argmax(self, heatmaps: torch.Tensor) -> torch.Tensor:
        """Differentiable centre of mass of ``relu(H)``, in image pixels ``(B, K, 2)``.

        Unbiased for a clean Gaussian (unlike a softmax, whose flat background pulls toward the centre)."""
        b, k, h, w = heatmaps.shape
        mass = F.relu(heatmaps.float())
        total = mass.sum(dim=(-2, -1)) + 1e-6
        xs = torch.arange(w, device=heatmaps.device, dtype=mass.dtype) + 0.5
        ys = torch.arange(h, device=heatmaps.device, dtype=mass.dtype) + 0.5
        x = (mass.sum(dim=-2) * xs).sum(dim=-1) / total
        y = (mass.sum(dim=-1) * ys).sum(dim=-1) / total
        return torch.stack([x, y], dim=-1) / self.scale

    def local_soft_argmax(self, heatmaps: torch.Tensor, radius: int = 3) -> torch.Tensor:
        """Differentiable sub-pixel decoding, in image pixels ``(B, K, 2)``: the centre of mass of ``relu(H)`` in
        the ``(2 radius + 1)^2`` window around each heatmap's peak (the window's position is not differentiated).

        Exact for a clean Gaussian away from the border when ``radius`` covers it (>= 3 sigma), and unlike the
        whole-map :meth:`soft_argmax` not pulled toward the centre by background noise. Falls back to the peak
        pixel's centre where the window holds no positive mass."""
        b, k, h, w = heatmaps.shape
        hm = heatmaps.float()
        idx = hm.detach().reshape(b, k, -1).argmax(dim=-1)
        px = (idx % w).float()
        py = torch.div(idx, w, rounding_mode="floor").float()
        xs = torch.arange(w, device=hm.device, dtype=hm.dtype)
        ys = torch.arange(h, device=hm.device, dtype=hm.dtype)
        wx = ((xs - px[..., None]).abs() <= radius).to(hm.dtype)  # (B, K, W)
        wy = ((ys - py[..., None]).abs() <= radius).to(hm.dtype)  # (B, K, H)
        mass = F.relu(hm) * wy[..., :, None] * wx[..., None, :]
        total = mass.sum(dim=(-2, -1))
        safe = total.clamp_min(1e-12)
        x = (mass.sum(dim=-2) * (xs + 0.5)).sum(dim=-1) / safe
        y = (mass.sum(dim=-1) * (ys + 0.5)).sum(dim=-1) / safe
        empty = total <= 1e-12
        x = torch.where(empty, px + 0.5, x)
        y = torch.where(empty, py + 0.5, y)
        return torch.stack([x, y], dim=-1) / self.scale

    def translate(self, heatmaps: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """First-order translation of each heatmap by ``offset`` ``(B, K, 2)`` image pixels:
        ``H(x - d) ~ H(x) - d . grad H(x)`` with the spatial gradient from five-point central differences.
        Equal to ``heatmaps`` at ``offset = 0``, where its derivative is that of moving the heatmap: the gradient
        of a loss with respect to each landmark's position (used by the transfer probe)."""
        hm = heatmaps.float()
        p = F.pad(hm, (2, 2, 2, 2), mode="replicate")
        gx = (p[..., 2:-2, :-4] - 8 * p[..., 2:-2, 1:-3] + 8 * p[..., 2:-2, 3:-1] - p[..., 2:-2, 4:]) / 12
        gy = (p[..., :-4, 2:-2] - 8 * p[..., 1:-3, 2:-2] + 8 * p[..., 3:-1, 2:-2] - p[..., 4:, 2:-2]) / 12
        d = offset.float() * self.scale
        return hm - d[..., 0, None, None] * gx - d[..., 1, None, None] * gy

    def warp(self, heatmaps: torch.Tensor, transform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Heatmaps of one view moved into another: ``W(H)(x) = H(T^-1 x)`` (bilinear) for ``transform`` ``T``
        ``(B, 3, 3)`` mapping this view's image pixels to the other's. Returns the warped heatmaps and a
        ``(B, 1, S, S)`` mask of the pixels whose source lies inside this view's heatmap (between pixel
        centres, so that no zero padding is interpolated)."""
        b, _, h, w = heatmaps.shape
        d = torch.diag(torch.tensor([self.scale, self.scale, 1.0], dtype=torch.float64, device=transform.device))
        inv = torch.linalg.inv(d @ transform.double() @ torch.linalg.inv(d))  # heatmap pixels, other -> this view
        xs = torch.arange(w, dtype=torch.float64, device=transform.device) + 0.5
        ys = torch.arange(h, dtype=torch.float64, device=transform.device) + 0.5
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        pix = torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)  # (HW, 3)
        src = (pix @ inv.transpose(1, 2))[..., :2]  # (B, HW, 2) source pixels
        eps = 1e-6
        valid = (
            (src[..., 0] >= 0.5 - eps)
            & (src[..., 0] <= w - 0.5 + eps)
            & (src[..., 1] >= 0.5 - eps)
            & (src[..., 1] <= h - 0.5 + eps)
        )
        size = torch.tensor([w, h], dtype=torch.float64, device=transform.device)
        grid = (2 * src / size - 1).reshape(b, h, w, 2).float()
        out = F.grid_sample(heatmaps.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out, valid.reshape(b, 1, h, w).to(out.dtype)
