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


def lfw_crops(size: int, n: int = 12) -> list:
    """Real faces: scikit-image's LFW subset (25 px faces), bicubic to ``size`` px."""
    from PIL import Image
    from skimage.data import lfw_subset

    faces = (lfw_subset()[:n] * 255).round().astype(np.uint8)
    return [Image.fromarray(f).convert("RGB").resize((size, size), Image.Resampling.BICUBIC) for f in faces]


def test_landmark_only_path_gives_the_same_landmarks(small_pair):
    """``face=False`` skips the SR tail and the global residual (DHLN), the SR head (JASRNet), and keeps GHCU."""
    from conftest import TINY_JASRNET, tiny_config
    from sht.models.ghcu import GHCU, CorrectedModel
    from sht.models.jasrnet import JASRNet

    ref, _ = small_pair
    x, base = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 128, 128)
    torch.manual_seed(1)
    jasr = JASRNet(tiny_config(*TINY_JASRNET).model).eval()
    cfg = load_config("small")
    ghcu = GHCU(68, 16)
    torch.nn.init.normal_(ghcu.fc2.weight, 0, 0.01)  # not the identity
    corrected = CorrectedModel(ref, ghcu, HeatmapCodec.from_config(cfg)).eval()
    with torch.inference_mode():
        for m, args in ((ref, (x, base)), (jasr, (torch.rand(3, 3, 64, 64),)), (corrected, (x, base))):
            full, lm = m(*args), m(*args, face=False)
            assert full.face is not None and lm.face is None
            assert len(full.heatmaps) == len(lm.heatmaps)
            assert all(torch.equal(a, b) for a, b in zip(full.heatmaps, lm.heatmaps, strict=True))
        assert torch.equal(corrected(x, base).points, corrected(x, base, face=False).points)


@pytest.fixture(scope="module")
def release():
    from sht.infer import RELEASE_WEIGHTS, Predictor

    if not RELEASE_WEIGHTS.is_file():
        pytest.skip("release weights not built in this checkout")
    return Predictor.from_checkpoint(RELEASE_WEIGHTS)


def test_predictor_landmark_only_matches_and_skips_the_face(release):
    crops = lfw_crops(16) + lfw_crops(64, 3)
    full, lm = release.predict(crops, batch_size=5), release.predict(crops, batch_size=5, face=False)
    for a, b in zip(full, lm, strict=True):
        assert np.array_equal(a.landmarks, b.landmarks) and np.array_equal(a.scores, b.scores)
        assert a.face is not None and b.face is None
    assert np.array_equal(release.landmarks_of(crops[:2])[1], full[1].landmarks)
