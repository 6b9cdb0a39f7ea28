from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from sht.data import degradation


@pytest.fixture(scope="module")
def face128():
    return Image.fromarray(skdata.astronaut()).crop((140, 20, 340, 220)).resize((128, 128), Image.BICUBIC)


def _t(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("size", [16, 32, 64])
def test_downsample_matches_pil_bicubic(face128, size):
    pil = np.asarray(face128.resize((size, size), Image.BICUBIC)).astype(float)
    ours = degradation.downsample(_t(face128), size)[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(ours - pil).mean() < 0.5  # PIL rounds its intermediate pass to 8 bits; we do not
    assert np.abs(ours - pil).max() <= 12


@pytest.mark.parametrize("size", [32, 64, 128])
def test_upsample_matches_pil_bicubic(face128, size):
    lr = face128.resize((16, 16), Image.BICUBIC)
    pil = np.asarray(lr.resize((size, size), Image.BICUBIC)).astype(float)
    ours = degradation.quantize(degradation.to_input(_t(lr), size))[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(ours - pil).mean() < 0.5


def test_quantize_is_idempotent_8bit():
    x = torch.rand(2, 3, 8, 8) * 1.2 - 0.1
    q = degradation.quantize(x)
    assert q.min() >= 0 and q.max() <= 1
    assert torch.equal(degradation.quantize(q), q)
    assert torch.allclose(q * 255, (q * 255).round(), atol=1e-4)
    with pytest.raises(ValueError):
        degradation.quantize(torch.zeros(2, dtype=torch.uint8))


def test_degrade_per_sample_sizes(face128):
    hr = _t(face128).repeat(3, 1, 1, 1)
    out, base = degradation.degrade(hr, [16, 32, 16], 32, 128)
    assert out.shape == (3, 3, 32, 32) and base.shape == (3, 3, 128, 128)
    assert torch.allclose(base[1], degradation.to_input(degradation.downsample(hr[:1], 32), 128)[0])
    assert torch.equal(out[0], out[2])
    assert not torch.equal(out[0], out[1])
    # a 32 px LR at 32 px input is just the 8-bit LR itself
    assert torch.allclose(out[1], degradation.downsample(hr[:1], 32)[0])
