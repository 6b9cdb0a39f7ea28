from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import SHARED, needs_shared
from sht.data.formats import IBUG68
from sht.data.transforms import (
    affine_matrices,
    apply_colour,
    canonical_box,
    canonical_crop,
    colour_factors,
    compose_affine,
    image_to_tensor,
    warp_images,
    warp_points,
)


def _dot_image(size: int, points: np.ndarray) -> Image.Image:
    """Black image with a small bright Gaussian blob at each point (sub-pixel exact centroids)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    img = np.zeros((size, size))
    for x, y in points:
        img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    return Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).convert("RGB")


def _centroid(img: np.ndarray, x: float, y: float, r: int = 5) -> tuple[float, float]:
    g = img.astype(np.float64)
    yy, xx = np.mgrid[0 : g.shape[0], 0 : g.shape[1]] + 0.5
    m = (np.abs(xx - x) < r) & (np.abs(yy - y) < r)
    w = g * m
    return float((w * xx).sum() / w.sum()), float((w * yy).sum() / w.sum())


def test_canonical_box_definition():
    pts = np.array([[10.0, 20.0], [50.0, 30.0], [30.0, 60.0]])
    box = canonical_box(pts, 1.3)
    assert box.side == pytest.approx(1.3 * 40)  # larger side of the 40 x 40 box
    assert box.x0 + box.side / 2 == pytest.approx(30.0) and box.y0 + box.side / 2 == pytest.approx(40.0)
    with pytest.raises(ValueError, match="empty box"):
        canonical_box(np.ones((68, 2)))


def test_canonical_crop_moves_image_content_with_the_points():
    rng = np.random.default_rng(0)
    pts = rng.uniform(60, 200, (68, 2))
    pts[:3] = [[80.0, 90.0], [170.0, 110.0], [120.0, 190.0]]
    img = _dot_image(256, pts[:3])
    crop, cp, _ = canonical_crop(img, pts, 128, 1.3)
    arr = np.asarray(crop)[..., 0]
    for k in range(3):
        cx, cy = _centroid(arr, *cp[k])
        assert math.hypot(cx - cp[k, 0], cy - cp[k, 1]) < 0.15


def test_context_crop_contains_the_canonical_crop_exactly():
    pts = np.random.default_rng(2).uniform(60, 200, (68, 2))
    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (256, 256, 3), dtype=np.uint8))
    crop, cp, _ = canonical_crop(img, pts, 64, 1.3)
    ctx, cq, _ = canonical_crop(img, pts, 64, 1.3, context=1.5)
    assert ctx.size == (96, 96)
    assert np.allclose(cq - 16, cp)
    fwd = compose_affine(96, 64, torch.zeros(1), torch.ones(1), torch.zeros(1, 2), torch.zeros(1, dtype=torch.bool))
    out = warp_images(image_to_tensor(ctx)[None], fwd, 64)
    ref = torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).float() / 255
    assert (out[0] - ref).abs().max() < 1e-4


def test_random_augmentation_keeps_landmarks_on_the_content():
    pts = np.array([[40.0, 50.0], [90.0, 45.0], [64.0, 100.0]])
    img = _dot_image(128, pts)
    g = torch.Generator().manual_seed(0)
    fwd, flips = affine_matrices(8, 128, 96, g, rotation=30, scale=(0.8, 1.2), translation=0.05, flip=0.0, zoom=0.75)
    out = warp_images(image_to_tensor(img)[None].repeat(8, 1, 1, 1), fwd, 96)
    # use an identity scheme so the three points are not permuted
    wp = warp_points(torch.tensor(pts, dtype=torch.float32)[None].repeat(8, 1, 1), fwd, flips, IBUG68)
    for i in range(8):
        arr = out[i, 0].numpy()
        for k in range(3):
            cx, cy = _centroid(arr, *wp[i, k].tolist())
            assert math.hypot(cx - wp[i, k, 0].item(), cy - wp[i, k, 1].item()) < 0.3


def test_flip_mirrors_and_permutes():
    pts = torch.rand(1, 68, 2) * 100 + 10
    fwd = compose_affine(128, 128, torch.zeros(1), torch.ones(1), torch.zeros(1, 2), torch.ones(1, dtype=torch.bool))
    out = warp_points(pts.clone(), fwd, torch.ones(1, dtype=torch.bool), IBUG68)
    assert torch.allclose(out[0, 36], torch.stack([128 - pts[0, 45, 0], pts[0, 45, 1]]), atol=1e-4)
    again = warp_points(out.clone(), fwd, torch.ones(1, dtype=torch.bool), IBUG68)
    assert torch.allclose(again, pts, atol=1e-4)


def test_colour_factors_and_identity():
    x = torch.rand(4, 3, 8, 8)
    assert torch.allclose(apply_colour(x, torch.ones(4, 3)), x, atol=1e-6)
    f = colour_factors(4, 0.4, torch.Generator().manual_seed(0))
    assert f.shape == (4, 3) and f.min() >= 0.6 and f.max() <= 1.4
    y = apply_colour(x, f)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1 and not torch.equal(x, y)
    # brightness alone scales the image
    b = torch.tensor([[0.5, 1.0, 1.0]]).repeat(4, 1)
    assert torch.allclose(apply_colour(x, b), x * 0.5, atol=1e-6)


@needs_shared("tools", "protocol.py")
@needs_shared("data", "300w", "helen", "testset")
def test_canonical_crop_matches_the_independent_protocol():
    spec = importlib.util.spec_from_file_location("protocol", SHARED / "tools" / "protocol.py")
    protocol = importlib.util.module_from_spec(spec)
    sys.modules["protocol"] = protocol
    spec.loader.exec_module(protocol)
    from sht.data.formats import load_image, scan_pts_folder

    for s in scan_pts_folder(SHARED / "data" / "300w" / "helen" / "testset").samples[:5]:
        img = load_image(s.image)
        ours, pts, _ = canonical_crop(img, s.points, 128, 1.3)
        ref, rpts = protocol.canonical(Image.open(s.image), protocol.read_pts(s.image.with_suffix(".pts")))
        assert np.array_equal(np.asarray(ours), np.asarray(ref))
        assert np.allclose(pts, rpts, atol=1e-6)
