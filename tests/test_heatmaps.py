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
