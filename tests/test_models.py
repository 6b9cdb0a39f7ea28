from __future__ import annotations

import pytest
import torch

from conftest import tiny_config
from sht.config import load_config
from sht.models import DHLN, FUBlock1, FUBlock2, count_parameters


@pytest.mark.parametrize("streams", ["dhln", "shn", "fhs"])
def test_output_shapes_per_stream(streams):
    cfg = tiny_config(f"model.streams={streams}").model
    out = DHLN(cfg)(torch.rand(3, 3, 16, 16))
    if streams == "fhs":
        assert out.heatmaps == []
    else:
        assert len(out.heatmaps) == cfg.num_stacks
        assert all(h.shape == (3, 68, 16, 16) for h in out.heatmaps)
    if streams == "shn":
        assert out.face is None
    else:
        assert out.face.shape == (3, 3, 32, 32)


def test_one_stream_variants_are_the_same_code_minus_a_stream():
    cfg = tiny_config()
    names = {
        s: set(dict(DHLN(tiny_config(f"model.streams={s}").model).named_parameters())) for s in ("dhln", "shn", "fhs")
    }
    assert names["shn"] < names["dhln"] and names["fhs"] < names["dhln"]
    fusion = names["dhln"] - names["shn"] - names["fhs"]
    assert fusion and all(n.startswith(("fu1.", "fu2.")) for n in fusion)
    assert cfg.model.has_face and cfg.model.has_landmarks


def test_fublock1_is_equation_1():
    fu = FUBlock1(8, 4).eval()
    p, q = torch.randn(2, 8, 5, 5), torch.randn(2, 4, 5, 5)
    assert torch.allclose(fu(p, q), q + q * torch.sigmoid(fu.rb(p)))
    assert fu.rb(p).shape == q.shape


def test_fublock2_is_equation_2():
    fu = FUBlock2(8, 4, kernel_size=3)
    p, q = torch.randn(2, 8, 5, 5), torch.randn(2, 4, 5, 5)
    assert torch.allclose(fu(p, q), p + fu.conv(torch.cat([p, q], 1)))


def test_both_streams_get_gradient_from_both_losses():
    model = DHLN(tiny_config().model)
    out = model(torch.rand(2, 3, 16, 16))
    out.heatmaps[-1].square().mean().backward(retain_graph=True)
    # the landmark loss reaches the SR stream through FUBlock2 ...
    assert model.sr_modules[0].blocks[0].conv1.weight.grad.abs().sum() > 0
    model.zero_grad()
    out.face.abs().mean().backward()
    # ... and the face loss reaches the hourglass through FUBlock1
    assert model.units[0].hourglass.up1.body[2].weight.grad.abs().sum() > 0


def test_global_residual_starts_from_bicubic():
    cfg = tiny_config("model.streams=fhs").model
    model = DHLN(cfg)
    for p in model.sr_tail.body[-1].parameters():
        torch.nn.init.zeros_(p)
    x = torch.rand(1, 3, 16, 16)
    ref = torch.nn.functional.interpolate(x, size=32, mode="bicubic", align_corners=False)
    assert torch.allclose(model(x).face, ref, atol=1e-6)


def test_paper_preset_sizes():
    """Parameter counts reported in RESULTS.md (paper: DHLN 22.72M, SHN 16.41M)."""
    dhln = count_parameters(DHLN(load_config("paper").model))
    shn = count_parameters(DHLN(load_config("paper", ["model.streams=shn"]).model))
    assert 14.5e6 < dhln < 15.5e6
    assert 12.5e6 < shn < 14.0e6
    out = DHLN(load_config("paper-m").model).eval()(torch.rand(1, 3, 64, 64))
    assert out.face.shape == (1, 3, 256, 256) and out.heatmaps[-1].shape == (1, 68, 64, 64)
