"""The speed optimisations keep outputs the same within stated tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sht.config import load_config
from sht.data.heatmaps import HeatmapCodec
from sht.models import DHLN


@pytest.fixture(scope="module")
def small_pair():
    torch.manual_seed(0)
    ref = DHLN(load_config("small").model).eval()
    cl = DHLN(load_config("small").model).eval().to(memory_format=torch.channels_last)
    cl.load_state_dict(ref.state_dict())
    return ref, cl


def test_channels_last_and_inference_mode_match_the_reference(small_pair):
    ref, cl = small_pair
    x, base = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 128, 128)
    with torch.no_grad():
        a = ref(x, base)
    with torch.inference_mode():
        b = cl(x.contiguous(memory_format=torch.channels_last), base)
        c = ref(x, base)
    assert torch.allclose(a.face, b.face, atol=1e-5) and torch.allclose(a.final_heatmaps, b.final_heatmaps, atol=1e-5)
    assert torch.equal(a.face, c.face)


def test_predictor_runs_channels_last(small_pair, tmp_path):
    from sht.checkpoint import save_checkpoint
    from sht.config import config_to_dict
    from sht.infer import Predictor

    ref, _ = small_pair
    path = save_checkpoint(
        tmp_path / "m.safetensors", {"dhln": ref}, state={"config": config_to_dict(load_config("small"))}
    )
    pred = Predictor.from_checkpoint(path)
    assert next(pred.model.parameters()).is_contiguous(memory_format=torch.channels_last) or all(
        p.dim() != 4 or p.is_contiguous(memory_format=torch.channels_last) for p in pred.model.parameters()
    )
    x, base = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 128, 128)
    with torch.inference_mode():
        assert torch.allclose(pred.model(x, base).face, ref(x, base).face, atol=1e-5)


def test_vectorised_heatmaps_equal_the_per_landmark_loop():
    codec = HeatmapCodec(128, 32, 1.5)
    pts = torch.rand(3, 68, 2) * 100 + 14
    g = torch.arange(32) + 0.5
    loop = torch.stack(
        [
            torch.stack([torch.exp(-((g[None] - x / 4) ** 2 + (g[:, None] - y / 4) ** 2) / (2 * 1.5**2)) for x, y in p])
            for p in pts
        ]
    )
    assert torch.allclose(codec.encode(pts), loop, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast is used on CUDA only")
def test_bf16_autocast_tolerance():
    m = DHLN(load_config("small").model).cuda().eval()
    x, base = torch.rand(4, 3, 32, 32, device="cuda"), torch.rand(4, 3, 128, 128, device="cuda")
    with torch.inference_mode():
        ref = m(x, base)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            amp = m(x, base)
    assert (amp.face.float() - ref.face).abs().max() < 0.05


def test_predictor_compile_matches_eager_and_amp_is_cuda_only(small_pair, tmp_path):
    """``Predictor(compile=True)`` gives the eager outputs (measured faster at batch 1 on CPU, RESULTS.md)."""
    from PIL import Image

    from sht.checkpoint import save_checkpoint
    from sht.config import config_to_dict
    from sht.infer import Predictor

    ref, _ = small_pair
    path = save_checkpoint(
        tmp_path / "m.safetensors", {"dhln": ref}, state={"config": config_to_dict(load_config("small"))}
    )
    with pytest.raises(ValueError, match="amp .* is for CUDA"):
        Predictor.from_checkpoint(path, amp=True)
    crops = [Image.fromarray((torch.rand(16, 16, 3) * 255).byte().numpy()) for _ in range(2)]
    eager = Predictor.from_checkpoint(path).predict(crops)
    try:
        compiled = Predictor.from_checkpoint(path, compile=True).predict(crops)
    except Exception as exc:  # noqa: BLE001 - inductor needs a C compiler; say so rather than fail
        pytest.skip(f"torch.compile unavailable here: {type(exc).__name__}")
    for a, b in zip(eager, compiled, strict=True):
        assert abs(a.landmarks - b.landmarks).max() < 1e-3
        assert np.abs(np.asarray(a.face, dtype=int) - np.asarray(b.face, dtype=int)).max() <= 1
