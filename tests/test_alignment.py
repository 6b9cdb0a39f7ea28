"""The Semantic Alignment search (sht.alignment) against known optima and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sht.alignment import chi2_grid, ideal_patch, semantic_search
from sht.data.heatmaps import HeatmapCodec


def gaussian_maps(centres: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """``(B, K, 2)`` heatmap-pixel centres -> ``(B, K, S, S)`` peak-1 Gaussians (the codec's own encoding)."""
    return HeatmapCodec(size, size, sigma).encode(centres)


def test_ideal_patch_is_a_centred_gaussian():
    e = ideal_patch(5, 1.5).reshape(5, 5)
    assert e[2, 2] == 1 and torch.allclose(e, e.T) and torch.allclose(e, e.flip(0))
    assert e[2, 3] == pytest.approx(math.exp(-1 / (2 * 1.5**2)))
    assert float(e.min()) > 0  # chi2 divides by E


def test_clean_gaussian_is_found_exactly_off_the_annotation():
    """A clean Gaussian on a pixel centre, 4-8 grid steps from the annotation: chi2 is 0 there, and with a weak
    prior that is the optimum; the annotation itself is found when the prior dominates."""
    step, sigma = 0.25, 1.5
    true = torch.tensor([[[10.5, 12.5], [20.5, 7.5]]])
    anchors = true - torch.tensor([[[4 * step, -8 * step], [-4 * step, 4 * step]]])
    hm = gaussian_maps(true, 32, sigma)
    cand, chi2 = chi2_grid(hm, anchors, 17, step, 5, sigma)
    assert cand.shape == (1, 2, 289, 2) and chi2.shape == (1, 2, 289)
    assert float(chi2.min()) < 1e-8  # the candidate on the peak matches E exactly
    found = semantic_search(hm, anchors, 17, step, sigma_prior=100.0, sigma_likelihood=1.0, patch=5, patch_sigma=sigma)
    assert torch.allclose(found, true, atol=1e-5)
    stuck = semantic_search(hm, anchors, 17, step, sigma_prior=1e-3, sigma_likelihood=1.0, patch=5, patch_sigma=sigma)
    assert torch.allclose(stuck, anchors, atol=1e-5)


def test_subpixel_peaks_are_found_to_one_grid_step():
    """Peaks between pixel centres (bilinear patches are then not exact): still the nearest candidates."""
    g = torch.Generator().manual_seed(0)
    true = 8 + 16 * torch.rand(1, 20, 2, generator=g)
    anchors = true + (torch.rand(1, 20, 2, generator=g) - 0.5) * 3
    hm = gaussian_maps(true, 32, 1.5)
    found = semantic_search(hm, anchors, 17, 0.25, sigma_prior=100.0, sigma_likelihood=1.0, patch=5, patch_sigma=1.5)
    assert float((found - true).abs().max()) <= 0.25


def test_window_bounds_the_search():
    """A peak outside the 17x17 window: the answer stays inside it, on the side of the peak."""
    anchors = torch.tensor([[[16.0, 16.0]]])
    hm = gaussian_maps(torch.tensor([[[26.0, 16.0]]]), 32, 1.5)
    found = semantic_search(hm, anchors, 17, 0.5, sigma_prior=100.0, sigma_likelihood=1.0, patch=5, patch_sigma=1.5)
    assert found[0, 0, 0] == pytest.approx(16.0 + 8 * 0.5) and found[0, 0, 1] == pytest.approx(16.0)


def test_prior_breaks_a_tie_between_two_equal_peaks():
    anchors = torch.tensor([[[16.0, 16.0]]])
    near, far = torch.tensor([[[17.0, 16.0]]]), torch.tensor([[[13.0, 16.0]]])
    hm = torch.maximum(gaussian_maps(near, 32, 1.0), gaussian_maps(far, 32, 1.0))
    found = semantic_search(hm, anchors, 17, 0.5, sigma_prior=2.0, sigma_likelihood=1.0, patch=3, patch_sigma=1.0)
    assert torch.allclose(found, near, atol=1e-5)


def test_matches_a_brute_force_reference():
    """Random heatmaps: the vectorised search equals a per-candidate numpy evaluation of spec §4's cost."""
    g = torch.Generator().manual_seed(3)
    hm = torch.rand(2, 3, 12, 12, generator=g)
    anchors = 3 + 6 * torch.rand(2, 3, 2, generator=g)
    window, step, patch, ps, s1, s2 = 5, 0.5, 3, 1.2, 1.5, 0.7
    found = semantic_search(hm, anchors, window, step, s1, s2, patch, ps)

    def bilinear(img: np.ndarray, x: float, y: float) -> float:  # pixel centres at i + 0.5, zeros outside
        u, v = x - 0.5, y - 0.5
        x0, y0 = math.floor(u), math.floor(v)
        val = 0.0
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                w = (1 - abs(u - xi)) * (1 - abs(v - yi))
                if 0 <= xi < img.shape[1] and 0 <= yi < img.shape[0]:
                    val += w * img[yi, xi]
        return val

    r = (np.arange(window) - window // 2) * step
    d = np.arange(patch) - patch // 2
    for b in range(2):
        for k in range(3):
            img, (ox, oy) = hm[b, k].numpy().astype(np.float64), anchors[b, k].double().numpy()
            best, arg = math.inf, None
            for cy in r:
                for cx in r:
                    y = (ox + cx, oy + cy)
                    chi2 = 0.0
                    for py in d:
                        for px in d:
                            e = math.exp(-(px * px + py * py) / (2 * ps * ps))
                            chi2 += (e - bilinear(img, y[0] + px, y[1] + py)) ** 2 / e
                    cost = (cx * cx + cy * cy) / (2 * s1 * s1) + chi2 / (2 * s2 * s2)
                    if cost < best - 1e-9:
                        best, arg = cost, y
            assert np.allclose(found[b, k].numpy(), arg, atol=1e-4), (b, k)


def test_rejects_even_windows():
    with pytest.raises(ValueError, match="odd"):
        semantic_search(torch.rand(1, 1, 8, 8), torch.ones(1, 1, 2) * 4, window=16)
