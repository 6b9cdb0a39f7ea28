from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_config
from sht.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from sht.config import config_to_dict
from sht.train import SupervisedStage, Trainer
from sht.train.logging import read_metrics


def _stage(cfg, faces):
    return SupervisedStage(cfg, torch.device("cpu"), train_faces=faces, val_faces=faces.subset(range(16)))


def test_short_training_reduces_the_loss(synth_faces, tmp_path):
    cfg = tiny_config("train.steps=60", "train.eval_every=60")
    stage = _stage(cfg, synth_faces)
    first = stage.train_step(0)
    Trainer(cfg, stage, tmp_path).fit()
    log = read_metrics(tmp_path / "metrics.csv")
    start, end = log["train/total"][0][1], log["train/total"][-1][1]
    assert end < 0.7 * start, (start, end)
    assert log["train/heatmap"][-1][1] < first["train/heatmap"].item()
    assert "val/nme@8" in log and "val/psnr@16" in log
    assert (tmp_path / "checkpoints" / "best.safetensors").exists()
    assert (tmp_path / "config.yaml").read_text().startswith("preset: small")


def test_exact_resume_after_interruption(synth_faces, tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config("train.steps=12", "train.checkpoint_every=5")
    Trainer(cfg, _stage(cfg, synth_faces), tmp_path / "straight").fit()
    # the same run, stopped after step 5 (its last checkpoint) and started again
    torch.manual_seed(0)
    half = tiny_config("train.steps=5", "train.checkpoint_every=5")
    Trainer(half, _stage(half, synth_faces), tmp_path / "resumed").fit()
    torch.manual_seed(123)  # the resumed process starts from a different state: the checkpoint must restore it
    Trainer(cfg, _stage(cfg, synth_faces), tmp_path / "resumed").fit()
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    steps = [s for s, _ in read_metrics(tmp_path / "resumed" / "metrics.csv")["train/total"]]
    assert steps == sorted(set(steps))  # no duplicated rows after the resume


def test_checkpoint_refuses_other_models_and_newer_formats(synth_faces, tmp_path):
    cfg = tiny_config()
    stage = _stage(cfg, synth_faces)
    path = save_checkpoint(tmp_path / "c.safetensors", stage.modules, stage.optimizers, {"config": config_to_dict(cfg)})
    assert json.loads((tmp_path / "c.json").read_text())["config"]["model"]["channels"] == 16
    other = SupervisedStage(tiny_config("model.channels=32"), torch.device("cpu"), train_faces=synth_faces)
    with pytest.raises(CheckpointError, match="do not fit the configured model"):
        load_checkpoint(path, other.modules)
    tensors, doc = read_checkpoint(path)
    doc["version"] = 99
    from safetensors.torch import save_file

    save_file(tensors, str(tmp_path / "new.safetensors"), metadata={"sht": json.dumps(doc)})
    with pytest.raises(CheckpointError, match="newer than this sht understands"):
        read_checkpoint(tmp_path / "new.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        read_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "none.safetensors")


def test_resume_refuses_a_different_model(synth_faces, tmp_path):
    cfg = tiny_config("train.steps=2")
    Trainer(cfg, _stage(cfg, synth_faces), tmp_path).fit()
    other = tiny_config("train.steps=4", "model.sr_blocks=2")
    with pytest.raises(CheckpointError, match="different model config"):
        Trainer(other, _stage(other, synth_faces), tmp_path).fit()


def test_train_init_starts_stage_one_from_exported_weights(synth_faces, tmp_path):
    from sht.export import export_weights

    cfg = tiny_config()
    src = _stage(cfg, synth_faces)
    ckpt = save_checkpoint(tmp_path / "c.safetensors", src.modules, src.optimizers, {"config": config_to_dict(cfg)})
    weights = export_weights(ckpt, tmp_path / "w.safetensors")  # fp16, widened on load
    tuned = _stage(tiny_config(f"train.init={weights}"), synth_faces)
    for (k, a), b in zip(src.model.state_dict().items(), tuned.model.state_dict().values(), strict=True):
        assert a.dtype == b.dtype, k
        assert torch.allclose(a.float(), b.float(), atol=1e-2, rtol=1e-3), k
    with pytest.raises(CheckpointError, match="do not fit the configured model"):
        _stage(tiny_config("model.channels=32", f"train.init={weights}"), synth_faces)


def test_train_init_skip_starts_a_larger_input_model_from_a_smaller_one(synth_faces, tmp_path):
    """``train.init_skip``: a model with twice the input (its SR tail upsamples less) takes every other weight of
    the smaller one, the skipped tail stays as initialised; without the skip, or with an unknown module, it is an
    error that names the problem."""
    from sht.config import ConfigError
    from sht.export import export_weights

    cfg = tiny_config()
    src = _stage(cfg, synth_faces)
    ckpt = save_checkpoint(tmp_path / "c.safetensors", src.modules, src.optimizers, {"config": config_to_dict(cfg)})
    weights = export_weights(ckpt, tmp_path / "w.safetensors", fp16=False)
    size = 2 * cfg.model.input_size
    torch.manual_seed(0)
    fresh = _stage(tiny_config(f"model.input_size={size}"), synth_faces).model.state_dict()
    torch.manual_seed(0)
    big = _stage(
        tiny_config(f"model.input_size={size}", f"train.init={weights}", "train.init_skip=[sr_tail]"), synth_faces
    )
    own = big.model.state_dict()
    for k, v in own.items():
        expected = fresh[k] if k.startswith("sr_tail.") else src.model.state_dict()[k]
        assert torch.equal(v, expected), k
    assert any(k.startswith("sr_tail.") for k in own)
    with pytest.raises(CheckpointError, match="shape mismatch"):
        _stage(tiny_config(f"model.input_size={size}", f"train.init={weights}"), synth_faces)
    with pytest.raises(CheckpointError, match="no module 'sr_head' to skip"):
        _stage(
            tiny_config(f"model.input_size={size}", f"train.init={weights}", "train.init_skip=[sr_head]"), synth_faces
        )
    with pytest.raises(ConfigError, match="init_skip needs train.init"):
        tiny_config("train.init_skip=[sr_tail]")
