"""The SHT stages (Eq. 5-10): FPTN on true heatmaps, joint DHLN+FPTN, weak supervision, the 4-stage recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FPTN_TINY, tiny_config
from sht.data.formats import DataError
from sht.models import VGG19Conv12
from sht.train import FPTNStage, JointStage, Trainer, run_recipe
from sht.train.logging import read_metrics
from sht.train.stages import swap_views


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
    # sht.add_unlabeled (default): all 4 labeled pairs of a batch of 8 stay, the 2 unlabeled pairs are added
    assert lab.input.shape[0] == 8 and [u.input.shape[0] for u in unl] == [2, 2]  # 4 + 1 + 1 pairs
    assert all(u.points is None and u.heatmaps is None for u in unl)
    paper = cfg_for(vgg_file, "sht.weak.unlabeled_pairs=2", "sht.add_unlabeled=false")
    kw = {"train_faces": synth_faces.subset(range(32)), "unlabeled": [(unlabeled, False), (video, True)]}
    lab, unl = JointStage(paper, torch.device("cpu"), weak=True, **kw)._batches(0)
    assert lab.input.shape[0] == 4 and [u.input.shape[0] for u in unl] == [2, 2]  # 2 + 1 + 1 pairs of 4
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


def _dhln_pass(stage):
    lab, _ = stage._batches(0)
    out = stage.model(lab.input, lab.base)
    return lab, out


@pytest.mark.parametrize("detach", [True, False])
def test_discriminator_conditions_are_detached_in_dhln_update(synth_faces, vgg_file, detach):
    """sht.detach_condition: with FPTN's output made independent of its inputs, the adversarial term can reach
    DHLN only through D_A's condition face and D_S's target heatmaps: not at all when they are detached."""
    torch.manual_seed(0)
    cfg = cfg_for(
        vgg_file,
        f"sht.detach_condition={detach}",
        "sht.lambda_gan=0.05",
        "sht.lambda_l1=0",
        "sht.lambda_perceptual=0",
        "sht.freeze_fptn=false",
    )
    stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    stage.t.fptn_net = lambda cond, a, b: torch.full_like(cond, 0.5)
    lab, out = _dhln_pass(stage)
    terms, _ = stage.pair_terms([out.final_heatmaps], [out.face], [lab], [False])
    assert {"adversarial", "l1"} <= set(terms)
    if terms["adversarial"].requires_grad:  # detached: nothing below the loss is trainable any more
        terms["adversarial"].backward()
    reached = [n for n, p in stage.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert (reached == []) == detach, reached[:3]
    assert detach or any(n.startswith("sr_tail") for n in reached)  # D_A's condition is DHLN's face


@pytest.mark.parametrize("encoding", ["rendered", "raw"])
def test_fptn_pose_inputs_and_real_heatmaps(synth_faces, vgg_file, encoding):
    """sht.fptn_heatmaps: rendered poses are codec Gaussians of DHLN's decoded points (what stage 2 trains on:
    the codec's ground truth), raw poses are the head outputs; sht.real_heatmaps: D_S's real pairs of labeled
    faces are the true heatmaps (truth) or DHLN's (predicted)."""
    torch.manual_seed(0)
    for real in ("truth", "predicted"):
        cfg = cfg_for(vgg_file, f"sht.fptn_heatmaps={encoding}", f"sht.real_heatmaps={real}")
        stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
        lab, out = _dhln_pass(stage)
        h = out.final_heatmaps
        if encoding == "rendered":
            # the truth re-rendered is the truth (for points away from the border, where the decoder is exact)
            inside = ((lab.points * stage.codec.scale > 4) & (lab.points * stage.codec.scale < 12)).all(-1)
            diff = (stage.pose(lab.heatmaps) - lab.heatmaps).abs().amax(dim=(-2, -1))
            assert inside.float().mean() > 0.5 and diff[inside].max() < 0.02
            pose = stage.pose(h)
            assert pose.min() >= 0 and pose.max() <= 1 + 1e-6
            pts = stage.codec.local_soft_argmax(h, cfg.sht.decode_radius)
            torch.testing.assert_close(pose, stage.codec.encode(pts))
        else:
            assert stage.pose(h) is h
        terms, io = stage.pair_terms([h], [out.face], [lab], [False])
        torch.testing.assert_close(io["hm_tar"], swap_views(stage.pose(h)))
        expected = swap_views(lab.heatmaps) if real == "truth" else io["hm_tar"]
        torch.testing.assert_close(io["hm_real"], expected)
        offsets = torch.zeros(*h.shape[:2], 2, requires_grad=True)
        terms, _ = stage.pair_terms([h.detach()], [out.face.detach()], [lab], [False], offsets=[offsets])
        terms["l1"].backward()  # a gradient on every landmark position (what the transfer probe reads)
        assert offsets.grad is not None and (offsets.grad.norm(dim=-1) > 0).float().mean() > 0.9


def test_fptn_weights_frozen_fptn_and_labeled_budget(synth_faces, vgg_file):
    """sht.fptn_lambdas: FPTN's own update has its own weights (all 0: FPTN does not move while DHLN does);
    sht.freeze_fptn: FPTN and the discriminators stay fixed, the transfer still reaches DHLN."""
    torch.manual_seed(0)
    for extra in (["sht.fptn_lambdas=[0,0,0]"], ["sht.freeze_fptn=true"]):
        cfg = cfg_for(vgg_file, "loss.heatmap=0", "loss.pixel=0", "loss.gradient=0", "sht.lambda_l1=1", *extra)
        stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
        before = {k: {n: p.detach().clone() for n, p in m.state_dict().items()} for k, m in stage.modules.items()}
        parts = stage.train_step(0)
        assert parts["train/pt_l1"] > 0
        after = {k: m.state_dict() for k, m in stage.modules.items()}
        changed = {k: any(not torch.equal(before[k][n], after[k][n]) for n in before[k]) for k in before}
        assert changed["dhln"] and not changed["fptn"], changed
        if "sht.freeze_fptn=true" in extra:
            assert not changed["d_app"] and not changed["d_shape"] and "train/discriminator" not in parts


def test_equivariance_alone_needs_no_fptn(synth_faces, tmp_path):
    """lambda_gan = lambda_l1 = lambda_perceptual = 0 and lambda_equivariance > 0: no FPTN, no VGG, no stage 2."""
    cfg = tiny_config(
        "sht.lambda_gan=0",
        "sht.lambda_l1=0",
        "sht.lambda_perceptual=0",
        "sht.lambda_equivariance=1",
        "data.train=[synthetic:32:3]",
        "sht.steps=[3,0,3,0]",
    )
    stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    assert stage.t is None and set(stage.modules) == {"dhln"}
    parts = stage.train_step(0)
    assert parts["train/pt_equivariance"] > 0 and "train/pt_l1" not in parts
    runs = run_recipe(cfg, tmp_path, stages=[1, 3])
    assert (runs[3] / "checkpoints" / "last.safetensors").exists() and not (tmp_path / "2-fptn").exists()


def test_fptn_at_its_own_face_size(synth_faces, vgg_file):
    """fptn.face_size: FPTN, D_A/D_S and the perceptual loss run on faces resized to that size; stage 2 also
    reports how much its output depends on the pose (val/pose_gap)."""
    torch.manual_seed(0)
    cfg = cfg_for(vgg_file, "fptn.face_size=16", "sht.fptn_lambdas=[0.01,1,0.1]")
    stage = FPTNStage(cfg, torch.device("cpu"), train_faces=synth_faces, val_faces=synth_faces.subset(range(8)))
    assert stage.t.size == 16 and stage.t.fptn.face_size == 16
    parts = stage.train_step(0)
    assert {"train/discriminator", "train/pt_l1", "train/pt_perceptual"} <= set(parts)
    metrics = stage.evaluate()
    assert {"val/transfer_l1", "val/transfer_l1_displaced", "val/pose_gap"} <= set(metrics)
    joint = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    assert torch.isfinite(joint.train_step(0)["train/total"])
