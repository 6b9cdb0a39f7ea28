"""The transfer probe (sht.train.probe) on generated faces: known answers for oracle and pose-blind transfers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import FPTN_TINY, tiny_config
from sht.models.dhln import DHLNOutput
from sht.train.probe import cosine_summary, displacement_losses, position_cosines, probe_batches
from sht.train.stages import JointStage


class Painter(nn.Module):
    """An oracle FPTN: paints the target heatmaps as the face (its output depends on nothing but the pose)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, cond: torch.Tensor, hm_con: torch.Tensor, hm_tar: torch.Tensor) -> torch.Tensor:
        img = F.interpolate(hm_tar.sum(1, keepdim=True), size=(self.size, self.size), mode="bilinear")
        return img.expand(-1, 3, -1, -1)


class Blind(Painter):
    """A pose-blind FPTN: returns the condition face."""

    def forward(self, cond: torch.Tensor, hm_con: torch.Tensor, hm_tar: torch.Tensor) -> torch.Tensor:
        return cond


class FakeDHLN(nn.Module):
    """Heatmaps rendered from the true landmarks moved by a fixed per-landmark error; the HR face as 'face'."""

    def __init__(self, stage: JointStage, batches: list, error: float) -> None:
        super().__init__()
        self.codec, self.batches, self.error = stage.codec, {id(b.input): b for b in batches}, error
        g = torch.Generator().manual_seed(5)
        self.offsets = {k: (torch.rand(b.points.shape, generator=g) * 2 - 1) * error for k, b in self.batches.items()}
        self.cfg = stage.model.cfg

    def forward(self, x: torch.Tensor, base: torch.Tensor) -> DHLNOutput:
        b = self.batches[id(x)]
        return DHLNOutput([self.codec.encode(b.points + self.offsets[id(x)])], b.hr)


def _stage(synth_faces, fptn: type[Painter], error: float = 3.0):
    cfg = tiny_config(
        *FPTN_TINY, "sht.lambda_gan=0", "sht.lambda_perceptual=0", "sht.lambda_l1=1", "sht.fptn_lambdas=[0,1,0]"
    )
    stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    net = fptn(stage.t.size)
    stage.t.fptn = stage.t.fptn_net = net
    batches = probe_batches(stage, synth_faces, pairs=12, lr_size=8, per_batch=4)
    for b in batches:  # the target faces are the paintings of their own true landmarks
        b.hr = net.forward(b.hr, b.heatmaps, b.heatmaps) if fptn is Painter else b.hr
    stage.model = FakeDHLN(stage, batches, error)
    return stage, batches


def test_probe_batches_are_pairs_of_held_out_faces(synth_faces):
    stage, batches = _stage(synth_faces, Painter)
    assert [b.input.shape[0] for b in batches] == [8, 8, 8]
    assert all(bool((b.lr_size == 8).all()) and b.points is not None for b in batches)


def test_cosine_summary_sign_convention():
    g = torch.Generator().manual_seed(0)
    truth = torch.rand(2, 68, 2, generator=g) * 50
    pred = truth + torch.randn(2, 68, 2, generator=g)
    toward = cosine_summary(pred - truth, pred, truth)  # gradient = pred - truth: descent moves toward the truth
    assert toward["cosine"] == pytest.approx(1.0) and toward["weighted"] == pytest.approx(1.0)
    assert set(toward["by_region"]) == {"contour", "brows", "nose", "eyes", "mouth"}
    assert all(v == pytest.approx(1.0) for v in toward["by_region"].values())
    assert cosine_summary(truth - pred, pred, truth)["cosine"] == pytest.approx(-1.0)
    side = torch.stack([-(truth - pred)[..., 1], (truth - pred)[..., 0]], -1)  # perpendicular
    assert abs(cosine_summary(side, pred, truth)["cosine"]) < 1e-6
    none = cosine_summary(torch.zeros_like(pred), pred, truth)
    assert none["coverage"] == 0 and math.isnan(none["cosine"])


def test_oracle_transfer_supervises_and_rises_with_displacement(synth_faces):
    """A transfer whose output is drawn from the target pose: its loss rises monotonically with the landmark
    displacement and its gradient on each predicted landmark points toward the true one."""
    stage, batches = _stage(synth_faces, Painter)
    disp = displacement_losses(stage, batches)
    assert list(disp) == ["0", "2", "5", "10"]
    totals = [v["total"] for v in disp.values()]
    assert totals[0] < 1e-6 and all(a < b for a, b in zip(totals, totals[1:], strict=False))
    cos = position_cosines(stage, batches)
    # even an oracle paints all landmarks into one image, so neighbours' errors mix: clearly positive, not 1
    assert cos["total"]["cosine"] > 0.3 and cos["total"]["coverage"] > 0.9
    assert all(v > 0.2 for v in cos["total"]["by_region"].values())
    assert cos["supervised"]["cosine"] > 0.8  # the reference: the supervised loss pulls toward the truth
    assert cos["prediction"]["nme_io"] > 0


def test_pose_blind_transfer_carries_no_landmark_signal(synth_faces):
    stage, batches = _stage(synth_faces, Blind)
    totals = [v["total"] for v in displacement_losses(stage, batches).values()]
    assert max(totals) - min(totals) < 1e-6
    cos = position_cosines(stage, batches)
    assert cos["total"]["coverage"] == 0 and math.isnan(cos["total"]["cosine"])


def test_equivariance_probe_without_fptn(synth_faces):
    """No FPTN (equivariance alone): no displacement curve; the equivariance gradient pulls each view toward the
    other's warped prediction, which on average points toward the truth for independent errors."""
    cfg = tiny_config("sht.lambda_gan=0", "sht.lambda_l1=0", "sht.lambda_perceptual=0", "sht.lambda_equivariance=1")
    stage = JointStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    batches = probe_batches(stage, synth_faces, pairs=16, lr_size=8, per_batch=8)
    stage.model = FakeDHLN(stage, batches, 2.0)
    assert displacement_losses(stage, batches) is None
    cos = position_cosines(stage, batches)
    assert set(cos) == {"equivariance", "total", "supervised", "prediction"}
    assert cos["total"]["cosine"] > 0.2
