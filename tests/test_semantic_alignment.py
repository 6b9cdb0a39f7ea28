"""Semantic Alignment training (schedule, searched targets, exact resume) and the GHCU stage with inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import TINY_JASRNET, tiny_config
from sht.config import ConfigError
from sht.models.ghcu import CorrectedModel
from sht.train import SupervisedStage, Trainer
from sht.train.semantic_alignment import (
    GHCUStage,
    SemanticAlignmentStage,
    search_faces,
    search_steps,
    train_ghcu,
)

SA = ["sa.enabled=true", "sa.batch_size=16"]


def _stage(cfg, faces):
    return SemanticAlignmentStage(cfg, torch.device("cpu"), train_faces=faces, val_faces=faces.subset(range(8)))


def test_schedule_and_config_checks():
    cfg = tiny_config(*SA, "train.steps=100", "sa.start=0.5", "sa.every=0.2")
    assert search_steps(cfg) == [50, 70, 90]
    assert search_steps(tiny_config(*SA, "train.steps=10", "sa.start=0", "sa.every=1")) == [0]
    with pytest.raises(ConfigError, match="odd"):
        tiny_config("sa.window=16")
    with pytest.raises(ConfigError, match="sa.unit"):
        tiny_config("sa.unit=mm")


def test_a_strong_prior_returns_the_annotations(synth_faces):
    """With sigma_1 -> 0 the optimum is the grid centre: the search round-trips the annotation coordinates."""
    cfg = tiny_config(*SA, "sa.sigma_prior=0.001")
    stage = _stage(cfg, synth_faces)
    pts = search_faces(stage.model, synth_faces, cfg, stage.codec, torch.device("cpu"))
    assert torch.allclose(pts, synth_faces.points, atol=1e-4)


def test_searched_points_supervise_training_and_resume_exactly(synth_faces, tmp_path):
    """Searches at steps 3, 7, 11 of 12; a run stopped at step 5 and resumed ends with bit-identical searched
    points, search count and weights; the caller's face set keeps its annotations."""
    common = [*SA, "sa.start=0.25", "sa.every=0.34", "sa.sigma_prior=4", "train.checkpoint_every=5"]
    annotations = synth_faces.points.clone()
    torch.manual_seed(0)
    cfg = tiny_config(*common, "train.steps=12")
    straight = _stage(cfg, synth_faces)
    assert search_steps(cfg) == [3, 7, 11]
    Trainer(cfg, straight, tmp_path / "straight").fit()
    assert int(straight.truth.rounds) == 3
    moved = (straight.truth.points - annotations).norm(dim=-1)
    assert float(moved.mean()) > 0.1  # the search did move points (the tiny model's heatmaps are not the labels)
    assert float(moved.max()) <= 8 * np.sqrt(2) + 1e-4  # inside the 17x17 window of face pixels
    assert torch.equal(synth_faces.points, annotations)
    # the training targets are the searched points
    batch = straight.builder.build(torch.arange(4))
    assert torch.allclose(batch.points.double(), straight.truth.points[:4].double() - 8, atol=1e-4)  # crop offset

    # the same run stopped after step 5 (its checkpoint; steps 0-4 are the warm-up of both LR schedules)
    torch.manual_seed(0)
    half = tiny_config(*common, "train.steps=5")
    first = _stage(half, synth_faces)
    first.schedule = search_steps(cfg)
    Trainer(half, first, tmp_path / "resumed").fit()
    assert int(first.truth.rounds) == 1
    torch.manual_seed(123)
    again = _stage(cfg, synth_faces)
    Trainer(cfg, again, tmp_path / "resumed").fit()
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "last.safetensors"))
    assert torch.equal(a["sa.points"], b["sa.points"]) and int(b["sa.rounds"]) == 3
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("variant", [["model.streams=shn"], TINY_JASRNET])
def test_sa_trains_shn_and_jasrnet(variant, tmp_path):
    from sht.data.dataset import load_source

    cfg = tiny_config(*SA, *variant, "train.steps=4", "sa.start=0.5", "sa.every=1")
    faces = load_source("synthetic:16:4", cfg.model.face_size, 1.3, 1.5)
    stage = _stage(cfg, faces)
    Trainer(cfg, stage, tmp_path).fit()
    assert int(stage.truth.rounds) == 1 and stage.truth.points.shape == faces.points.shape
    assert torch.isfinite(stage.truth.points).all()


def test_sa_refuses_a_face_only_model(synth_faces):
    with pytest.raises(ValueError, match="searches landmark heatmaps"):
        _stage(tiny_config(*SA, "model.streams=fhs"), synth_faces)


def test_ghcu_stage_checkpoint_and_inference(synth_faces, tmp_path):
    """GHCU trained on an SA run's searched points is stored as ``ghcu`` beside the frozen backbone and used by
    Predictor/Detector (or not, with ``ghcu=False``)."""
    from sht.infer import Detector, Predictor

    torch.manual_seed(0)
    cfg = tiny_config(*SA, "train.steps=6", "sa.start=0.5", "ghcu.steps=8", "ghcu.input_size=16", "ghcu.lr=0.01")
    Trainer(cfg, _stage(cfg, synth_faces), tmp_path / "sa").fit()
    sa_ckpt = tmp_path / "sa" / "checkpoints" / "last.safetensors"
    before = load_file(str(sa_ckpt))
    ckpt = train_ghcu(cfg, sa_ckpt, tmp_path / "ghcu", synth_faces, synth_faces.subset(range(8)))
    after = load_file(str(ckpt))
    assert any(k.startswith("ghcu.") for k in after)
    assert torch.equal(after["sa.points"], before["sa.points"])  # trained on the searched points
    assert all(torch.equal(after[k], before[k]) for k in before if k.startswith("dhln."))  # frozen backbone
    pred = Predictor.from_checkpoint(ckpt)
    assert isinstance(pred.model, CorrectedModel)
    plain = Predictor.from_checkpoint(ckpt, ghcu=False)
    assert not isinstance(plain.model, CorrectedModel)
    crops = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)) for i in (0, 1)]
    a, b = pred.predict(crops), plain.predict(crops)
    assert a[0].landmarks.shape == (68, 2)
    assert max(np.abs(x.landmarks - y.landmarks).max() for x, y in zip(a, b, strict=True)) > 1e-4
    assert Detector(weights=ckpt).landmarks(crops[0]).shape == (68, 2)
    from sht.export import export_weights

    release = export_weights(ckpt, tmp_path / "release.safetensors")  # release weights keep the GHCU
    assert isinstance(Predictor.from_checkpoint(release).model, CorrectedModel)
    # GHCU's stage needs no SA: on a plain checkpoint it trains on the annotations
    plain_cfg = tiny_config("train.steps=2")
    Trainer(plain_cfg, SupervisedStage(plain_cfg, torch.device("cpu"), train_faces=synth_faces), tmp_path / "p").fit()
    stage = GHCUStage(plain_cfg, torch.device("cpu"), tmp_path / "p" / "checkpoints" / "last.safetensors", synth_faces)
    assert torch.equal(stage.truth.points, synth_faces.points)
