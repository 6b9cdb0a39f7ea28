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

    from sht.demo import lfw_faces

    return [f.resize((size, size), Image.Resampling.BICUBIC) for f in lfw_faces(n)]


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


def assert_onnx_matches_torch(torch_pred, onnx_pred, crops) -> None:
    """Landmarks to 1e-3 px, raw faces to 1e-3 (in [0, 1]), with and without the face, several batch sizes."""
    for bs in (1, 5):
        for face in (True, False):
            a = torch_pred.predict(crops, batch_size=bs, face=face)
            b = onnx_pred.predict(crops, batch_size=bs, face=face)
            assert max(np.abs(p.landmarks - q.landmarks).max() for p, q in zip(a, b, strict=True)) < 1e-3
            assert all((q.face is None) == (not face) for q in b)
    x, base = torch_pred.prepare(crops)
    with torch.inference_mode():
        want, got = torch_pred.model(x, base), onnx_pred.forward(x, base)
    assert (want.face - got.face).abs().max() < 1e-3
    assert (want.final_heatmaps - got.final_heatmaps).abs().max() < 1e-4


def test_onnx_backend_matches_torch_on_the_release_weights(release):
    pytest.importorskip("onnxruntime")
    from sht.infer import Predictor

    onnx = Predictor.from_checkpoint(release.source, backend="onnx", threads=1)
    assert_onnx_matches_torch(release, onnx, lfw_crops(16) + lfw_crops(64, 3))


def test_onnx_backend_on_a_tiny_model_with_ghcu_and_a_graph_cache(tmp_path):
    """A tiny random-config DHLN, with a (non-identity) GHCU applied in torch after the graph; the cache folder is
    filled once and reused."""
    pytest.importorskip("onnxruntime")
    from conftest import tiny_config
    from sht.infer import Predictor
    from sht.models.ghcu import GHCU, CorrectedModel

    torch.manual_seed(0)
    cfg = tiny_config()
    codec = HeatmapCodec.from_config(cfg)
    ghcu = GHCU(68, 16)
    torch.nn.init.normal_(ghcu.fc2.weight, 0, 0.01)
    model = CorrectedModel(DHLN(cfg.model), ghcu, codec).eval()
    crops = lfw_crops(16, 6) + lfw_crops(8, 2)
    ref = Predictor(model, codec, cfg)
    onnx = Predictor(model, codec, cfg, backend="onnx", threads=1, onnx_cache=tmp_path)
    assert_onnx_matches_torch(ref, onnx, crops)
    assert not any(m.training for m in model.modules())  # building the graphs leaves the model in eval mode
    graphs = sorted(p.name for p in tmp_path.iterdir())
    assert len(graphs) == 2 and graphs[0].endswith("-face.onnx") and graphs[1].endswith("-landmarks.onnx")
    again = Predictor(model, codec, cfg, backend="onnx", onnx_cache=tmp_path).predict(crops[:1], face=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == graphs
    assert np.abs(again[0].landmarks - ref.predict(crops[:1])[0].landmarks).max() < 1e-3
    with torch.inference_mode():  # GHCU moved the points: they are not the decoded heatmaps
        x, _ = ref.prepare(crops)
        out = onnx.forward(x, face=False)
    assert (out.points - codec.decode(out.final_heatmaps)[0]).abs().max() > 1e-3


def test_onnx_backend_refusals(monkeypatch):
    """A missing onnxruntime, an unknown backend, or ONNX on CUDA: one clear ConfigError each."""
    import sys

    from conftest import tiny_config
    from sht.errors import ConfigError
    from sht.infer import Predictor

    cfg = tiny_config()
    model, codec = DHLN(cfg.model), HeatmapCodec.from_config(cfg)
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'"):
        Predictor(model, codec, cfg, backend="tensorrt")
    with pytest.raises(ConfigError, match="runs on CPU"):
        Predictor(model, codec, cfg, backend="onnx", compile=True)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(ConfigError, match=r"needs onnxruntime: pip install 'sht\[export\]'"):
        Predictor(model, codec, cfg, backend="onnx")
