from __future__ import annotations

import math

import torch

from sht.config import AugmentConfig, PairsConfig
from sht.data.dataset import BatchBuilder
from sht.data.heatmaps import HeatmapCodec
from sht.data.pairs import PairBuilder, clipped_normal


def _builder(faces, **aug):
    return BatchBuilder(faces, 16, HeatmapCodec(32, 16, 1.0), [8, 16], AugmentConfig(**aug))


def _similarity(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """Rotation (degrees) and scale of the similarity that maps point set a onto b."""
    a0, b0 = a - a.mean(0), b - b.mean(0)
    za, zb = torch.complex(a0[:, 0].double(), a0[:, 1].double()), torch.complex(b0[:, 0].double(), b0[:, 1].double())
    z = (zb * za.conj()).sum() / (za.abs() ** 2).sum()
    return math.degrees(math.atan2(z.imag, z.real)), float(z.abs())


def test_clipped_normal_bounds():
    x = clipped_normal(10_000, 15.0, -30.0, 30.0, torch.Generator().manual_seed(0))
    assert x.min() >= -30 and x.max() <= 30 and abs(float(x.std()) - 13.5) < 1.5


def test_image_pairs_are_two_consistent_views_of_one_face(synth_faces):
    cfg = PairsConfig(rotation_sigma=15, rotation_max=30, scale_sigma=0.1, translation=0.0)
    pb = PairBuilder(_builder(synth_faces, flip=0.5, colour=0.3), cfg)
    g = torch.Generator().manual_seed(1)
    idx = torch.arange(8)
    batch = pb.build(idx, g)
    assert batch.input.shape == (16, 3, 16, 16) and batch.hr.shape == (16, 3, 32, 32)
    assert torch.equal(batch.lr_size[:8], batch.lr_size[8:])
    for i in range(8):
        rot, scale = _similarity(batch.points[i], batch.points[8 + i])
        assert abs(rot) <= 60.0 + 1e-3 and 0.8 / 1.2 - 1e-3 <= scale <= 1.2 / 0.8 + 1e-3
    # the relative geometry varies between pairs (the views are not copies)
    rots = [_similarity(batch.points[i], batch.points[8 + i])[0] for i in range(8)]
    assert max(rots) - min(rots) > 5


def test_pairs_share_flip_and_colour(synth_faces):
    cfg = PairsConfig(rotation_sigma=0.0, scale_sigma=0.0, translation=0.0)
    pb = PairBuilder(_builder(synth_faces, flip=0.5, colour=0.4), cfg)
    batch = pb.build(torch.arange(8), torch.Generator().manual_seed(3))
    # with no rotation/scale/shift both views are identical renders: same flip, same colour
    assert torch.equal(batch.hr[:8], batch.hr[8:])
    assert torch.allclose(batch.points[:8], batch.points[8:])


def test_video_pairs_take_another_frame_of_the_same_clip(synth_faces):
    faces = synth_faces.subset(range(12))
    faces.groups = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 4, 4])
    pb = PairBuilder(_builder(faces), PairsConfig(), video=True)
    assert 5 not in pb.anchors.tolist()  # a clip of one frame has no pair
    g = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        idx = pb.anchors[torch.randperm(len(pb.anchors), generator=g)[:6]]
        other = pb.partners(idx, g)
        assert torch.equal(faces.groups[idx], faces.groups[other])
        assert not torch.any(idx == other)
        seen |= set(zip(idx.tolist(), other.tolist(), strict=True))
    assert (6, 9) in seen or (6, 8) in seen or (6, 7) in seen
    batch = pb.build(pb.anchors[:4], g)
    assert batch.hr.shape[0] == 8


def test_unlabeled_pairs_have_no_landmarks(synth_faces):
    faces = synth_faces.subset(range(8))
    faces.points = None
    pb = PairBuilder(BatchBuilder(faces, 16, HeatmapCodec(32, 16, 1.0), [8]), PairsConfig())
    batch = pb.build(torch.arange(4), torch.Generator().manual_seed(0))
    assert batch.points is None and batch.heatmaps is None and batch.hr.shape == (8, 3, 32, 32)
