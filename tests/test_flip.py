"""The flip test (sht.models.flip.FlipTest): exact mirror equivariance, the same answer through ONNX Runtime,
and one clear refusal where it does not apply. Tiny random models, no data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from sht.config import ConfigError, load_config
from sht.data.formats import IBUG68
from sht.data.heatmaps import HeatmapCodec
from sht.infer import Predictor
from sht.models.factory import build_model
from sht.models.flip import FlipTest


def tiny_cfg(*extra: str):
    return load_config(
        "small",
        ["model.input_size=16", "model.face_size=32", "model.channels=8", "model.sr_channels=4", "model.depth=2"]
        + list(extra),
    )


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(tiny_cfg().model).eval()


def mirror(hm: torch.Tensor) -> torch.Tensor:
    """Heatmaps of the mirror image: flipped and left/right channels swapped."""
    return hm.flip(-1)[:, list(IBUG68.flip)]


@torch.inference_mode()
def test_flip_test_is_exactly_mirror_equivariant_and_the_plain_model_is_not(model):
    x, base = torch.rand(3, 3, 16, 16), torch.rand(3, 3, 32, 32)
    ft = FlipTest(model, IBUG68.flip)
    a, b = ft(x, base), ft(x.flip(-1), base.flip(-1))
    torch.testing.assert_close(b.final_heatmaps, mirror(a.final_heatmaps), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b.face, a.face.flip(-1), atol=1e-5, rtol=1e-5)
    p, q = model(x, base), model(x.flip(-1), base.flip(-1))
    assert (q.final_heatmaps - mirror(p.final_heatmaps)).abs().max() > 1e-3
    # and it is the mean of the direct and the mirrored prediction
    torch.testing.assert_close(a.final_heatmaps, (p.final_heatmaps + mirror(q.final_heatmaps)) / 2)
    assert ft(x, face=False).face is None and len(ft(x).heatmaps) == len(p.heatmaps)


def test_predictor_flip_mirrors_landmarks_and_onnx_agrees(model):
    cfg = tiny_cfg()
    codec = HeatmapCodec.from_config(cfg)
    pred = Predictor(model, codec, cfg, flip=True)
    rng = np.random.default_rng(0)
    crop = Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8))
    a = pred.predict([crop])[0]
    b = pred.predict([crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)])[0]
    mirrored = b.landmarks[list(IBUG68.flip)] * [-1, 1] + [20, 0]
    np.testing.assert_allclose(mirrored, a.landmarks, atol=1e-3)
    plain = Predictor(model, codec, cfg).predict([crop])[0]
    assert np.abs(plain.landmarks - a.landmarks).max() > 1e-3
    pytest.importorskip("onnxruntime")
    ort = Predictor(model, codec, cfg, backend="onnx", flip=True).predict([crop])[0]
    np.testing.assert_allclose(ort.landmarks, a.landmarks, atol=1e-3)


def test_flip_test_refuses_jasrnet():
    cfg = tiny_cfg("model.arch=jasrnet")
    with pytest.raises(ConfigError, match="flip test is for DHLN"):
        Predictor(build_model(cfg.model), HeatmapCodec.from_config(cfg), cfg, flip=True)
