"""Semantic Alignment's search for the latent "real" ground truth (Liu et al., CVPR 2019;
``../shared/paper/semantic-alignment-spec.md`` §2-4), as model-agnostic tensor math.

For landmark ``k`` with annotation ``o`` and predicted heatmap ``H``, every candidate ``y`` of a ``window x window``
grid centred on ``o`` (spacing ``step`` heatmap pixels) costs

    ||o - y||^2 / (2 sigma_1^2)  +  chi2(y) / (2 sigma_2^2),   chi2(y) = sum_i (E_i - Phi_i(y))^2 / E_i,

the negative log of prior x likelihood (spec §4): ``Phi(y)`` is the ``patch x patch`` patch of ``H`` around ``y``
(bilinear, one heatmap pixel apart) and ``E`` the ideal Gaussian patch (peak 1, ``patch_sigma``), always positive so
chi2 stays finite (spec §9). Landmarks are independent, so the minimiser is the argmin over the grid. Coordinates
follow :class:`~sht.data.heatmaps.HeatmapCodec`: heatmap pixel ``i`` has its centre at ``i + 0.5``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK = 256  # landmark heatmaps per grid_sample call in chi2_grid


def _offsets(n: int, spacing: float, device: torch.device) -> torch.Tensor:
    """``(n * n, 2)`` offsets ``(dx, dy)`` of an ``n x n`` grid centred on 0, row-major (dy outer)."""
    r = (torch.arange(n, device=device, dtype=torch.float32) - (n - 1) / 2) * spacing
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def ideal_patch(patch: int, sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """``E``: the ``(patch * patch,)`` Gaussian of peak 1 centred on the patch (row-major)."""
    d = _offsets(patch, 1.0, device or torch.device("cpu"))
    return torch.exp(-(d**2).sum(-1) / (2 * sigma**2))


def chi2_grid(
    heatmaps: torch.Tensor, anchors: torch.Tensor, window: int, step: float, patch: int, patch_sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Candidates ``(B, K, W*W, 2)`` around ``anchors`` ``(B, K, 2)`` (heatmap pixels) and their Pearson chi2
    ``(B, K, W*W)`` against the ideal Gaussian patch; samples outside the heatmap read 0."""
    if window < 1 or window % 2 == 0 or patch < 1 or patch % 2 == 0:
        raise ValueError(f"window and patch must be odd and positive, got {window} and {patch}")
    b, k, h, w = heatmaps.shape
    dev = heatmaps.device
    cand = anchors.float().unsqueeze(2) + _offsets(window, step, dev)  # (B, K, C, 2)
    size = torch.tensor([w, h], device=dev, dtype=torch.float32)
    maps, n = heatmaps.float().reshape(b * k, 1, h, w), cand.shape[2]
    # grid_sample's [-1, 1] units, formed on the small tensors: one add on the (B*K, C, P*P, 2) grid
    centres, offsets = (2 * cand / size - 1).reshape(b * k, n, 1, 2), 2 * _offsets(patch, 1.0, dev) / size
    e = ideal_patch(patch, patch_sigma, dev)
    chi2 = torch.empty(b * k, n, device=dev)
    for i in range(0, b * k, CHUNK):  # a few MB at a time rather than one tensor of hundreds
        phi = F.grid_sample(
            maps[i : i + CHUNK], centres[i : i + CHUNK] + offsets, padding_mode="zeros", align_corners=False
        )[:, 0]
        # sum_i (E_i - Phi_i)^2 / E_i as sum Phi^2 / E - 2 sum Phi + sum E: two passes over Phi, not four
        chi2[i : i + CHUNK] = phi.square() @ (1 / e) - 2 * phi.sum(-1) + e.sum()
    return cand, chi2.reshape(b, k, n)


def search_cost(
    candidates: torch.Tensor, chi2: torch.Tensor, anchors: torch.Tensor, sigma_prior: float, sigma_likelihood: float
) -> torch.Tensor:
    """``-log(prior x likelihood)`` per candidate ``(B, K, C)``; ``sigma_prior`` in heatmap pixels."""
    dist2 = ((candidates - anchors.float().unsqueeze(2)) ** 2).sum(-1)
    return dist2 / (2 * sigma_prior**2) + chi2 / (2 * sigma_likelihood**2)


def semantic_search(
    heatmaps: torch.Tensor,
    anchors: torch.Tensor,
    window: int = 17,
    step: float = 1.0,
    sigma_prior: float = 1.0,
    sigma_likelihood: float = 1.0,
    patch: int = 5,
    patch_sigma: float = 1.5,
) -> torch.Tensor:
    """The searched points ``(B, K, 2)`` (heatmap pixels): for each landmark the candidate of the ``window`` grid
    around its annotation ``anchors`` that minimises the cost of the module docstring (ties: the first)."""
    cand, chi2 = chi2_grid(heatmaps, anchors, window, step, patch, patch_sigma)
    best = search_cost(cand, chi2, anchors, sigma_prior, sigma_likelihood).argmin(dim=-1)
    return cand.gather(2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
