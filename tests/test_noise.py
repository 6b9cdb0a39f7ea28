"""Synthetic annotation noise (sht.data.noise): along the contour only, the right size, clean points untouched."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import tiny_config
from sht.data.formats import DataError
from sht.data.noise import contour_noise, contour_tangents, weak_points, with_label_noise


def _shapes(synth_faces, copies: int) -> torch.Tensor:
    """``copies`` x the generated shapes, each copy rotated and scaled differently (float64)."""
    g = torch.Generator().manual_seed(1)
    base = synth_faces.points.double()
    out = []
    for _ in range(copies):
        a = float(torch.rand((), generator=g) * 1.2 - 0.6)
        s = float(0.5 + torch.rand((), generator=g) * 2)
        rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]], dtype=torch.float64)
        out.append(s * base @ rot.T + 10)
    return torch.cat(out)


@pytest.mark.parametrize("fraction", [0.03, 0.06])
def test_weak_points_move_along_the_tangent_by_the_right_amount(synth_faces, fraction):
    pts = _shapes(synth_faces, 40)  # 2560 shapes
    noisy = contour_noise(pts, fraction, seed=7)
    weak = weak_points()
    clean = [k for k in range(68) if k not in weak]
    assert torch.equal(noisy[:, clean], pts[:, clean])
    d = noisy - pts
    t = contour_tangents(pts)
    along = (d * t).sum(-1)[:, weak]
    across = (d[..., 0] * t[..., 1] - d[..., 1] * t[..., 0])[:, weak]
    assert float(across.abs().max()) < 1e-9 * float(pts.abs().max())
    iod = (pts[:, 36] - pts[:, 45]).norm(dim=-1, keepdim=True)
    z = along / (fraction * iod)  # standard normal if the size is right
    assert abs(float(z.mean())) < 0.03 and abs(float(z.std()) - 1) < 0.03
    # the tangents are unit vectors along the chains (jaw 0-16, nose bridge 27-30)
    assert torch.allclose(t[:, weak].norm(dim=-1), torch.ones(len(pts), len(weak), dtype=torch.float64))
    chord = pts[:, 9] - pts[:, 7]
    assert torch.allclose(t[:, 8], chord / chord.norm(dim=-1, keepdim=True))
    end = pts[:, 30] - pts[:, 29]
    assert torch.allclose(t[:, 30], end / end.norm(dim=-1, keepdim=True))


def test_noise_is_seeded_and_fixed_per_sample(synth_faces):
    a = with_label_noise(synth_faces, 0.06, seed=3)
    b = with_label_noise(synth_faces, 0.06, seed=3)
    c = with_label_noise(synth_faces, 0.06, seed=4)
    assert torch.equal(a.points, b.points) and not torch.equal(a.points, c.points)
    assert a.images is synth_faces.images and a.points.dtype == synth_faces.points.dtype
    assert not torch.equal(a.points, synth_faces.points)
    assert torch.equal(with_label_noise(synth_faces, 0.0).points, synth_faces.points)


def test_data_option_reaches_the_training_faces(tmp_path):
    from sht.train.stages import load_labeled

    clean, _ = load_labeled(tiny_config("data.train=[synthetic:20:2]"))
    noisy, _ = load_labeled(tiny_config("data.train=[synthetic:20:2]", "data.label_noise=0.03"))
    weak = weak_points()
    moved = (noisy.points - clean.points).norm(dim=-1)
    assert float(moved[:, weak].min()) > 0
    assert float(moved[:, [k for k in range(68) if k not in weak]].max()) == 0


def test_refuses_other_schemes_and_negative_noise():
    with pytest.raises(DataError, match="68-point"):
        contour_noise(torch.rand(2, 5, 2), 0.03)
    with pytest.raises(ValueError, match=">= 0"):
        contour_noise(torch.rand(2, 68, 2), -0.1)
