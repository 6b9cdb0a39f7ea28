from __future__ import annotations

import pytest
import torch

from sht.data.heatmaps import HeatmapCodec


@pytest.mark.parametrize(("size", "sigma"), [(32, 1.0), (64, 1.5), (64, 2.0)])
def test_subpixel_round_trip(size, sigma):
    codec = HeatmapCodec(128, size, sigma, "subpixel")
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(4, 68, 2, generator=g) * 100 + 14
    dec, peak = codec.decode(codec.encode(pts))
    assert dec.shape == pts.shape and peak.shape == (4, 68)
    assert (dec - pts).norm(dim=-1).max() < 0.01  # image pixels
    assert torch.all(peak > 0.6)


def test_argmax_decoder_error_is_bounded_by_the_quarter_offset():
    codec = HeatmapCodec(128, 32, 1.0, "argmax")
    pts = torch.rand(2, 68, 2) * 100 + 14
    dec, _ = codec.decode(codec.encode(pts))
    # within half a heatmap pixel per axis after the quarter-pixel shift (4 image pixels per heatmap pixel)
    assert (dec - pts).abs().max() <= 0.5 * 4 + 1e-4
    sub = HeatmapCodec(128, 32, 1.0, "subpixel")
    assert (sub.decode(sub.encode(pts))[0] - pts).abs().mean() < (dec - pts).abs().mean()


def test_encode_geometry_and_visibility():
    codec = HeatmapCodec(64, 16, 1.0)
    pts = torch.tensor([[[10.0, 30.0], [2.0, 2.0]]])
    hm = codec.encode(pts, visible=torch.tensor([[True, False]]))
    # point (10, 30) in a 64 frame -> (2.5, 7.5) in heatmap units: the peak is pixel (x=2, y=7), value 1
    assert hm[0, 0].argmax().item() == 7 * 16 + 2
    assert hm[0, 0].max().item() == pytest.approx(1.0)
    assert hm[0, 1].abs().sum() == 0


def test_decode_at_the_border_and_on_noise():
    codec = HeatmapCodec(32, 32, 1.0)
    hm = torch.zeros(1, 2, 32, 32)
    hm[0, 0, 0, 0] = 1.0
    hm[0, 1] = torch.randn(32, 32)
    dec, _ = codec.decode(hm)
    assert torch.isfinite(dec).all()
    assert dec[0, 0].tolist() == pytest.approx([0.5, 0.5], abs=0.26)


def test_soft_argmax_is_unbiased_and_differentiable():
    codec = HeatmapCodec(128, 32, 1.0)
    pts = torch.rand(2, 68, 2) * 90 + 19
    hm = codec.encode(pts).requires_grad_(True)
    est = codec.soft_argmax(hm)
    assert (est - pts).abs().max() < 0.05
    est.sum().backward()
    assert hm.grad is not None and hm.grad.abs().sum() > 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="decoder"):
        HeatmapCodec(128, 32, 1.0, "mean")
    with pytest.raises(ValueError, match="sigma"):
        HeatmapCodec(128, 32, 0.0)


def test_local_soft_argmax_decodes_gaussians_and_is_differentiable():
    codec = HeatmapCodec(128, 32, 1.5)
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(3, 68, 2, generator=g) * 80 + 24
    hm = codec.encode(pts)
    dec = codec.local_soft_argmax(hm, radius=4)
    assert (dec - pts).abs().max() * codec.scale < 0.015  # heatmap pixels
    # background noise far from the peak does not move it (the whole-map soft-argmax is pulled to the centre)
    far = hm.clone()
    far[..., 0:2, 0:2] += 0.5  # a blob in the corner, far from most peaks
    keep = (pts * codec.scale > 8).all(-1)
    assert ((codec.local_soft_argmax(far, 4) - pts).abs()[keep]).max() * codec.scale < 0.015
    assert ((codec.soft_argmax(far) - pts).abs()[keep]).mean() * codec.scale > 0.1
    x = hm.clone().requires_grad_(True)
    codec.local_soft_argmax(x, 4)[..., 0].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    empty = torch.zeros(1, 1, 32, 32) - 1.0
    assert torch.isfinite(codec.local_soft_argmax(empty, 4)).all()


def test_rendering_is_differentiable_in_the_points():
    codec = HeatmapCodec(64, 16, 1.0)
    p = torch.tensor([[[20.3, 30.7]]], requires_grad=True)
    target = codec.encode(torch.tensor([[[24.0, 28.0]]]))
    ((codec.encode(p) - target) ** 2).sum().backward()
    assert p.grad is not None
    # the descent direction moves the point toward the target
    assert p.grad[0, 0, 0] < 0 and p.grad[0, 0, 1] > 0


def test_translate_has_the_exact_first_order_derivative():
    """d/d offset of a loss of translate(H, offset) at 0 = d/d p of the same loss of encode(p + offset)."""
    codec = HeatmapCodec(128, 32, 1.5)
    g = torch.Generator().manual_seed(2)
    pts = torch.rand(2, 5, 2, generator=g) * 80 + 24
    weights = torch.rand(2, 5, 32, 32, generator=g)
    offset = torch.zeros(2, 5, 2, requires_grad=True)
    hm = codec.encode(pts)
    assert torch.equal(codec.translate(hm, torch.zeros(2, 5, 2)), hm)
    (codec.translate(hm, offset) * weights).sum().backward()
    moved = pts.clone().requires_grad_(True)
    (codec.encode(moved) * weights).sum().backward()
    assert offset.grad is not None and moved.grad is not None
    rel = (offset.grad - moved.grad).norm() / moved.grad.norm()
    assert rel < 0.03  # five-point differences of a sigma-1.5 Gaussian


def test_warp_moves_heatmaps_with_the_view_transform():
    codec = HeatmapCodec(64, 16, 1.0)
    pts = torch.tensor([[[20.0, 30.0], [40.0, 18.0]]])
    # a 90-degree rotation about the face centre plus a shift of 8 image px (2 heatmap px): grid to grid
    t = torch.tensor([[[0.0, -1.0, 64.0 + 8.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]], dtype=torch.float64)
    moved = (torch.cat([pts, torch.ones(1, 2, 1)], -1).double() @ t.transpose(1, 2))[..., :2].float()
    warped, mask = codec.warp(codec.encode(pts), t)
    assert warped.shape == (1, 2, 16, 16) and mask.shape == (1, 1, 16, 16)
    assert 0 < mask.sum() < 256  # the shift moves part of the view outside
    torch.testing.assert_close(warped * mask, codec.encode(moved) * mask, atol=1e-5, rtol=0)
    ident, full = codec.warp(codec.encode(pts), torch.eye(3, dtype=torch.float64)[None])
    assert full.sum() == 256
    torch.testing.assert_close(ident, codec.encode(pts), atol=1e-6, rtol=0)
