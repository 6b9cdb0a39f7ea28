"""The SHT stages (Eq. 5-10): FPTN on true heatmaps, joint DHLN+FPTN, weak supervision, the 4-stage recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_config
from sht.data.formats import DataError
from sht.models import VGG19Conv12
from sht.train import FPTNStage, JointStage, Trainer, run_recipe
from sht.train.logging import read_metrics

FPTN_TINY = ["fptn.channels=8", "fptn.max_channels=16", "fptn.blocks=2", "fptn.disc_channels=8", "fptn.disc_layers=2"]


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Generated VGG-19 conv1_2 weights in the real file layout (the real ones are not shipped)."""
    rng = np.random.default_rng(0)
    vgg = VGG19Conv12.from_arrays(
        rng.normal(0, 0.05, (64, 3, 3, 3)).astype(np.float32),
        np.zeros(64, np.float32),
        rng.normal(0, 0.02, (64, 64, 3, 3)).astype(np.float32),
        np.zeros(64, np.float32),
    )
    path = tmp_path_factory.mktemp("vgg") / "vgg.npz"
    vgg.save_npz(path)
    return path


def cfg_for(vgg_file, *extra):
    return tiny_config(*FPTN_TINY, f"fptn.vgg_weights={vgg_file}", *extra)


def test_fptn_stage_learns_to_transfer(synth_faces, vgg_file, tmp_path):
    """With reconstruction weights only the transfer error must fall; with the paper's weights all three terms
    and the discriminators are trained and logged."""
    torch.manual_seed(0)
    cfg = cfg_for(
        vgg_file,
        "train.steps=60",
        "train.eval_every=60",
        "fptn.lr=0.002",
        "train.log_every=10",
        "sht.lambda_gan=0",
        "sht.lambda_l1=1",
        "sht.lambda_perceptual=0.1",
    )
    stage = FPTNStage(cfg, torch.device("cpu"), train_faces=synth_faces, val_faces=synth_faces.subset(range(16)))
    before = stage.evaluate()["val/transfer_l1"]
    Trainer(cfg, stage, tmp_path / "a").fit()
    log = read_metrics(tmp_path / "a" / "metrics.csv")
    l1 = [v for _, v in log["train/pt_l1"]]
    assert l1[-1] < 0.9 * l1[0], l1
    assert log["val/transfer_l1"][-1][1] < before
    paper = cfg_for(vgg_file, "train.steps=5")
    Trainer(paper, FPTNStage(paper, torch.device("cpu"), train_faces=synth_faces), tmp_path / "b").fit()
    log = read_metrics(tmp_path / "b" / "metrics.csv")
    assert {"train/discriminator", "train/pt_adversarial", "train/pt_l1", "train/pt_perceptual"} <= set(log)
    assert all(np.isfinite(v) for k in log for _, v in log[k])


def test_transfer_loss_reaches_dhln(synth_faces, vgg_file):
    """Eq. 9: FPTN's losses back-propagate into DHLN through its hallucinated faces and heatmaps."""
    cfg = cfg_for(vgg_file, "loss.heatmap=0", "loss.pixel=0", "loss.gradient=0", "loss.coordinate=0")
    stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    stage.train_step(0)  # DHLN's own loss is switched off: any change comes from the transfer loss
    grads = {n: p.grad for n, p in stage.model.named_parameters()}
    assert grads["units.0.hourglass.up1.body.2.weight"] is not None
    assert grads["units.0.hourglass.up1.body.2.weight"].abs().sum() > 0  # through the heatmaps
    assert grads["sr_tail.body.0.weight"].abs().sum() > 0  # through the hallucinated faces


def test_weak_stage_reads_no_landmark_labels(synth_faces, vgg_file):
    """Unlabeled faces have no landmarks at all (points is None): the step must not need them."""
    cfg = cfg_for(vgg_file, "sht.weak.unlabeled_pairs=2")
    unlabeled = synth_faces.subset(range(32, 64))
    unlabeled.points = None
    video = synth_faces.subset(range(16))
    video.points = None
    video.groups = torch.arange(16) // 4
    stage = JointStage(
        cfg,
        torch.device("cpu"),
        weak=True,
        train_faces=synth_faces.subset(range(32)),
        unlabeled=[(unlabeled, False), (video, True)],
    )
    parts = stage.train_step(0)
    assert "train/dh_unlabeled_pixel" in parts and "train/dh_unlabeled_heatmap" not in parts
    assert "train/dh_heatmap" in parts
    lab, unl = stage._batches(0)
    assert lab.input.shape[0] == 4 and [u.input.shape[0] for u in unl] == [2, 2]  # 2 + 1 + 1 pairs of 4
    assert all(u.points is None and u.heatmaps is None for u in unl)
    with pytest.raises(DataError, match="no unlabeled data"):
        JointStage(cfg, torch.device("cpu"), weak=True, train_faces=synth_faces)


def test_recipe_runs_resumes_and_chains_stages(vgg_file, tmp_path, synth_folder):
    cfg = cfg_for(
        vgg_file,
        "data.train=[synthetic:32:3]",
        "data.val=[synthetic:8:4]",
        "sht.steps=[4,4,4,4]",
        f"sht.weak.images=[{synth_folder}]",
        "sht.weak.box=[0.5,0.5,0.72]",
    )
    runs = run_recipe(cfg, tmp_path, stages=[1, 2])
    assert (runs[1] / "checkpoints" / "last.safetensors").exists() and not (tmp_path / "3-joint").exists()
    mtime = (runs[1] / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    runs = run_recipe(cfg, tmp_path)  # stages 1-2 are finished and skipped; 3-4 start from them
    assert (runs[1] / "checkpoints" / "last.safetensors").stat().st_mtime_ns == mtime
    from sht.checkpoint import read_checkpoint

    t1, _ = read_checkpoint(runs[1] / "checkpoints" / "last.safetensors")
    t3, d3 = read_checkpoint(runs[3] / "checkpoints" / "last.safetensors")
    t4, d4 = read_checkpoint(runs[4] / "checkpoints" / "last.safetensors")
    assert d3["stage"] == "joint" and d4["stage"] == "weak" and d4["step"] == 4
    assert set(k.split(".")[0] for k in t4 if not k.startswith("optim/")) == {"dhln", "fptn", "d_app", "d_shape"}
    # stage 3 started from stage 1's DHLN and changed it
    k = "dhln.sr_stem.weight"
    assert not torch.equal(t1[k], t3[k]) and (t1[k] - t3[k]).abs().max() < 0.1
    assert "val/nme" in read_metrics(runs[4] / "metrics.csv")


def test_missing_vgg_weights_is_a_clear_error(synth_faces, tmp_path):
    cfg = tiny_config(*FPTN_TINY, f"fptn.vgg_weights={tmp_path / 'none.npz'}")
    with pytest.raises(FileNotFoundError, match="fptn.vgg_weights"):
        FPTNStage(cfg, torch.device("cpu"), train_faces=synth_faces)
