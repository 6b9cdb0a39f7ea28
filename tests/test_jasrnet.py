"""JASRNet (jasrnet-spec §3-4) behind the shared trainer, checkpoint, Predictor/Detector and ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY, TINY_JASRNET
from sht.config import ConfigError, load_config
from sht.data.dataset import load_source
from sht.data.heatmaps import HeatmapCodec
from sht.losses import jasrnet_loss
from sht.models.dhln import DHLN, count_parameters
from sht.models.factory import build_model
from sht.models.jasrnet import JASRNet
from sht.train import SupervisedStage, Trainer
from sht.train.logging import read_metrics

SPEC_TRAINABLE = 19_885_778  # jasrnet-spec §3: 19,885,814 in all, 36 of them in the fixed mean/std layers
JASR_TINY = [*TINY, *TINY_JASRNET]


def spec_count(c: int, n: int, k: int = 68) -> int:
    """Parameters of the spec §3 table for C = ``c``, ``n`` deep blocks and ``k`` landmarks: C->C 3x3 convs (two per
    RB: 2+3+4+2+n encoder, 2 SR, 2 CPM features, 2 stage 1, 3+3 stages 2-3; plus 3 fusion, 1 SR, 3 long-skip and
    1 CPM-feature convs), the stem, the x8 tail, the heatmap convs and the two 197->C convs."""
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    square = 2 * (2 + 3 + 4 + 2 + n + 2 + 2 + 2 + 3 + 3) + 3 + 1 + 3 + 1
    return (
        square * conv(c, c) + conv(3, c) + 3 * conv(c, 4 * c) + conv(c, 3) + 3 * conv(c, k + 1) + 2 * conv(c + k + 1, c)
    )


def jasr_config(*overrides: str):
    return load_config("small", [*JASR_TINY, *overrides])


@pytest.fixture(scope="module")
def faces64():
    return load_source("synthetic:48:11", 64, 1.3, 1.5)


def test_config_selects_the_architecture_and_its_sizes():
    cfg = load_config("small", ["model.arch=jasrnet"]).model
    assert (cfg.input_size, cfg.heatmap_size, cfg.face_size) == (128, 16, 128)  # bicubic input at the face size
    assert isinstance(build_model(cfg), JASRNet)
    assert isinstance(build_model(load_config("small").model), DHLN)
    assert load_config("small").model.heatmap_size == 32
    with pytest.raises(ConfigError, match="model.arch must be"):
        load_config("small", ["model.arch=resnet"])
    with pytest.raises(ConfigError, match="both heads"):
        load_config("small", ["model.arch=jasrnet", "model.streams=shn"])


@pytest.mark.parametrize("preset", ["paper", "small"])
def test_output_shapes_and_parameters_per_preset(preset):
    cfg = load_config(preset, ["model.arch=jasrnet"]).model
    model = build_model(cfg).eval()
    n = count_parameters(model)
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128))
    assert len(out.heatmaps) == 3 and len(out.background) == 3
    assert all(h.shape == (2, 68, 16, 16) for h in out.heatmaps)
    assert all(b.shape == (2, 1, 16, 16) for b in out.background)
    assert out.face.shape == (2, 3, 128, 128) and out.points is None
    print(f"JASRNet {preset}: {n:,} parameters (spec, paper setting: {SPEC_TRAINABLE:,} trainable + 36 fixed)")
    assert n == spec_count(cfg.jasr_channels, cfg.jasr_blocks)
    if preset == "paper":
        assert (cfg.jasr_channels, cfg.jasr_blocks) == (128, 32)
        assert n == SPEC_TRAINABLE
    else:
        assert (cfg.jasr_channels, cfg.jasr_blocks) == (12, 8)
    # spec §3 initialisation: conv weights N(0, 0.01), zero biases
    w = torch.cat([m.weight.detach().flatten() for m in model.modules() if isinstance(m, torch.nn.Conv2d)])
    assert abs(float(w.std()) - 0.01) < 1e-3
    assert all(float(m.bias.detach().abs().max()) == 0 for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_sr_output_layer_replicates_the_spec_mean_shift():
    """The output layer is ``(y + mean) / std`` (spec §1): with a zero tail the face is mean / std everywhere."""
    model = JASRNet(jasr_config().model)
    for p in model.sr_tail[-1].parameters():
        torch.nn.init.zeros_(p)
    face = model(torch.rand(1, 3, 64, 64)).face
    assert torch.allclose(face[0, :, 5, 7], model.mean.flatten() / model.std.flatten())


def test_loss_is_the_spec_cpm_plus_l1():
    g = torch.Generator().manual_seed(0)
    b, k, s = 2, 3, 4
    target = torch.rand(b, k, s, s, generator=g)
    heat = [torch.rand(b, k, s, s, generator=g) for _ in range(3)]
    bg = [torch.rand(b, 1, s, s, generator=g) for _ in range(3)]
    face, hr = torch.rand(b, 3, 8, 8, generator=g), torch.rand(b, 3, 8, 8, generator=g)
    visible = torch.tensor([[True, False, True], [True, True, True]])
    loss = jasrnet_loss(heat, bg, face, target, hr, visible)
    tbg = (1 - target.max(dim=1, keepdim=True).values).clamp(min=0)
    m = visible.float()[:, :, None, None]
    want = sum(((h - target) ** 2 * m).sum() + ((c - tbg) ** 2).sum() for h, c in zip(heat, bg, strict=True)) / (2 * b)
    assert torch.allclose(loss.parts["cpm"], want)
    assert torch.allclose(loss.parts["l1"], (face - hr).abs().mean())
    assert torch.allclose(loss.total, want + (face - hr).abs().mean())
    # the hidden landmark's channel gets no gradient
    heat[0].requires_grad_(True)
    jasrnet_loss(heat, bg, face, target, hr, visible).total.backward()
    assert heat[0].grad[0, 1].abs().sum() == 0 and heat[0].grad[0, 0].abs().sum() > 0


def test_short_training_lowers_the_loss(faces64, tmp_path):
    torch.manual_seed(0)
    cfg = jasr_config("train.steps=60", "train.eval_every=60", "train.lr=0.005", "data.lr_sizes=[16]")
    stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=faces64, val_faces=faces64.subset(range(8)))
    Trainer(cfg, stage, tmp_path).fit()
    log = read_metrics(tmp_path / "metrics.csv")
    cpm, l1 = log["train/cpm"], log["train/l1"]
    assert cpm[-1][1] < 0.75 * cpm[0][1], cpm  # measured 311 -> 186 (seed 0)
    assert l1[-1][1] < 0.5 * l1[0][1], l1
    assert "val/nme@16" in log and "val/psnr@16" in log


def test_checkpoint_predictor_detector_and_onnx(faces64, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from sht.export import export_onnx, export_weights
    from sht.infer import Detector, Predictor

    cfg = jasr_config("train.steps=3")
    stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=faces64, val_faces=None)
    Trainer(cfg, stage, tmp_path / "run").fit()
    ckpt = tmp_path / "run" / "checkpoints" / "last.safetensors"
    pred = Predictor.from_checkpoint(ckpt)
    assert isinstance(pred.model, JASRNet) and pred.codec.heatmap_size == 8 and pred.input_size == 64
    crop = Image.fromarray(np.random.default_rng(2).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    p = pred.predict([crop])[0]
    assert p.landmarks.shape == (68, 2) and p.face.size == (64, 64)
    assert np.all((p.landmarks >= -1) & (p.landmarks <= 17))  # in the 16 px crop's own pixels
    # the decoded points are the shared codec's decoding of the landmark channels (the background is dropped)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16), size=64, mode="bicubic", align_corners=False)
    with torch.no_grad():
        out = pred.model(x)
    want = HeatmapCodec(64, 8, 1.0).decode(out.final_heatmaps)[0]
    assert torch.allclose(pred.codec.decode(out.final_heatmaps)[0], want)
    from sht.evaluation import evaluate_checkpoint

    table = evaluate_checkpoint(str(ckpt), ["synthetic:6:3"], [16], out_dir=str(tmp_path / "eval"))
    assert "6 faces" in table and (tmp_path / "eval" / "results.json").exists()
    w = export_weights(ckpt, tmp_path / "w.safetensors")
    det = Detector(weights=w)
    assert det.landmarks(crop).shape == (68, 2) and det.hallucinate(crop).size == (64, 64)
    onnx_path = export_onnx(ckpt, tmp_path / "jasrnet.onnx")
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    # JASRNet's input already is the face-size bicubic face: the unused ``base`` input is pruned from the graph
    assert [i.name for i in sess.get_inputs()] == ["input"]
    assert [o.name for o in sess.get_outputs()] == ["heatmaps", "face"]
    for n in (1, 3):
        x = torch.rand(n, 3, 64, 64)
        with torch.no_grad():
            out = pred.model(x)
        hm, face = sess.run(None, {"input": x.numpy()})
        assert hm.shape == (n, 68, 8, 8)
        assert np.abs(hm - out.final_heatmaps.numpy()).max() < 1e-4
        assert np.abs(face - out.face.numpy()).max() < 1e-4
