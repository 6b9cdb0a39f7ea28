from __future__ import annotations

import pytest
import torch

from sht.config import LossConfig
from sht.data.heatmaps import HeatmapCodec
from sht.losses import dhln_loss, equivariance_loss, gradient_loss, gradient_map, heatmap_mse


def test_gradient_map_is_central_differences_per_channel():
    x = torch.zeros(1, 2, 5, 5)
    x[0, 0] = torch.arange(5.0).repeat(5, 1)  # ramp in x: I(x+1) - I(x-1) = 2 inside
    x[0, 1] = torch.arange(5.0).repeat(5, 1).T * 3  # ramp in y: 6 inside
    g = gradient_map(x, eps=0.0)
    assert torch.allclose(g[0, 0, 1:-1, 1:-1], torch.full((3, 3), 2.0))
    assert torch.allclose(g[0, 1, 1:-1, 1:-1], torch.full((3, 3), 6.0))
    assert g[0, 0, 2, 0] == pytest.approx(1.0)  # replicated border: one-sided difference


def test_gradient_loss_zero_for_equal_images_and_differentiable():
    a = torch.rand(2, 3, 8, 8, requires_grad=True)
    assert gradient_loss(a, a.detach()).item() == pytest.approx(0.0, abs=1e-6)
    gradient_loss(a, torch.rand(2, 3, 8, 8)).backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_foreground_weight():
    codec = HeatmapCodec(32, 16, 1.0)
    target = codec.encode(torch.tensor([[[16.0, 16.0]]]))
    pred = torch.zeros_like(target)
    plain = heatmap_mse(pred, target)
    assert plain == pytest.approx((target**2).mean().item())
    assert heatmap_mse(pred, target, 10.0) > 5 * plain


def test_eq4_weights_and_label_free_variant():
    cfg = LossConfig(heatmap=1.0, pixel=0.01, gradient=0.01)
    hm = [torch.rand(2, 68, 8, 8), torch.rand(2, 68, 8, 8)]
    target = torch.rand(2, 68, 8, 8)
    face, hr = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    full = dhln_loss(hm, face, target, hr, cfg)
    expect = sum(((h - target) ** 2).mean() for h in hm) + 0.01 * (face - hr).abs().mean()
    expect = expect + 0.01 * (gradient_map(face) - gradient_map(hr)).abs().mean()
    assert full.total.item() == pytest.approx(expect.item(), rel=1e-5)
    assert set(full.parts) == {"heatmap", "pixel", "gradient", "total"}
    # Eq. 10: gamma_1 = 0 -- no landmark target is needed or read
    free = dhln_loss(hm, face, None, hr, cfg, labeled=False)
    assert "heatmap" not in free.parts
    assert free.total.item() == pytest.approx((expect - sum(((h - target) ** 2).mean() for h in hm)).item(), rel=1e-5)


@pytest.mark.parametrize("foreground_weight", [0.0, 10.0])
def test_equivariance_loss_zero_for_equivariant_heatmaps_positive_otherwise(foreground_weight):
    """H_k = T(H_j) exactly (a 90-degree rotation and a whole-pixel shift map pixel centres onto pixel centres,
    so bilinear resampling is exact): zero. Any landmark moved in one view: positive, with gradients into both."""
    codec = HeatmapCodec(64, 16, 1.0)
    g = torch.Generator().manual_seed(0)
    pts_j = torch.rand(3, 5, 2, generator=g) * 30 + 17
    t = torch.tensor([[0.0, 1.0, 4.0], [-1.0, 0.0, 64.0], [0.0, 0.0, 1.0]], dtype=torch.float64).repeat(3, 1, 1)
    pts_k = (torch.cat([pts_j, torch.ones(3, 5, 1)], -1).double() @ t.transpose(1, 2))[..., :2].float()
    h_j, h_k = codec.encode(pts_j), codec.encode(pts_k)
    assert equivariance_loss(h_j, h_k, t, codec, foreground_weight) < 1e-10
    wrong = codec.encode(pts_k + torch.tensor([6.0, -4.0]) * (torch.arange(5) == 2).float()[None, :, None])
    hj = h_j.clone().requires_grad_(True)
    hk = wrong.clone().requires_grad_(True)
    loss = equivariance_loss(hj, hk, t, codec, foreground_weight)
    assert loss > 1e-4
    loss.backward()
    assert hj.grad is not None and hk.grad is not None
    assert hk.grad[:, 2].abs().sum() > 0 and hj.grad[:, 2].abs().sum() > 0  # the moved landmark, both views
    assert hk.grad[:, 0].abs().sum() < 1e-6 * hk.grad[:, 2].abs().sum() + 1e-12  # the others agree already
    # a general similarity (scale and rotation): small for equivariant points, far larger when one is moved
    s = torch.tensor([[0.9, -0.3, 12.0], [0.3, 0.9, -5.0], [0.0, 0.0, 1.0]], dtype=torch.float64).repeat(3, 1, 1)
    pts_s = (torch.cat([pts_j, torch.ones(3, 5, 1)], -1).double() @ s.transpose(1, 2))[..., :2].float()
    good = equivariance_loss(h_j, codec.encode(pts_s), s, codec, foreground_weight)
    bad = equivariance_loss(h_j, codec.encode(pts_s + 5.0), s, codec, foreground_weight)
    assert bad > 5 * good
