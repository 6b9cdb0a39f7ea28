"""FPTN (paper §3.2, Eq. 5-8): PATB equations, generator shapes and gradients, discriminators, VGG conv1_2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from sht.config import ConfigError, FPTNConfig, load_config
from sht.models import (
    FPTN,
    AppearanceDiscriminator,
    PATBlock,
    PatchDiscriminator,
    ShapeDiscriminator,
    VGG19Conv12,
    make_norm,
)
from sht.models.fptn import landmark_warp, similarity_fit

REAL_VGG = Path(__file__).resolve().parents[2] / "shared/data/vgg19/vgg19_block1_caffe_bgr.npz"
TINY = FPTNConfig(channels=8, max_channels=16, downsample=2, blocks=2)


def _convs(seq: nn.Module) -> list[nn.Conv2d]:
    return [m for m in seq.modules() if isinstance(m, nn.Conv2d)]


def _blobs(size: int, centres: list[tuple[float, float]], sigma: float) -> torch.Tensor:
    """(N, 1, size, size) Gaussians centred at pixel coordinates (x, y) (pixel centres at i + 0.5)."""
    c = torch.arange(size, dtype=torch.float32) + 0.5
    maps = [torch.exp(-((c[None, :] - x) ** 2 + (c[:, None] - y) ** 2) / (2 * sigma**2)) for x, y in centres]
    return torch.stack(maps)[:, None]


# ----------------------------------------------------------------------------------------------------- PATBlock


def test_patblock_matches_its_equations():
    torch.manual_seed(0)
    block = PATBlock(channels=4, pose_in=6, norm="none")
    for p in block.parameters():  # make the biases matter too
        nn.init.normal_(p, std=0.3)
    image, pose = torch.randn(2, 4, 5, 5), torch.randn(2, 6, 5, 5)
    image_out, pose_out = block(image, pose)

    (i1, i2), (p1, p2) = _convs(block.image_path), _convs(block.pose_path)
    assert (i1.in_channels, i1.out_channels, i2.out_channels) == (4, 4, 4)
    assert (p1.in_channels, p1.out_channels, p2.out_channels) == (6, 4, 4)
    img_feat = F.conv2d(F.relu(F.conv2d(image, i1.weight, i1.bias, padding=1)), i2.weight, i2.bias, padding=1)
    pose_feat = F.conv2d(F.relu(F.conv2d(pose, p1.weight, p1.bias, padding=1)), p2.weight, p2.bias, padding=1)
    attention = torch.sigmoid(pose_feat)
    expected = image + img_feat * attention
    torch.testing.assert_close(image_out, expected)
    assert pose_out.shape == (2, 8, 5, 5)
    torch.testing.assert_close(pose_out[:, :4], pose_feat)  # pose path output, before the sigmoid
    torch.testing.assert_close(pose_out[:, 4:], expected)


def test_patblock_attention_gates_the_residual():
    torch.manual_seed(1)
    block = PATBlock(channels=3, pose_in=2, norm="instance")
    last = _convs(block.pose_path)[-1]
    nn.init.zeros_(last.weight)
    image, pose = torch.randn(1, 3, 6, 6), torch.randn(1, 2, 6, 6)
    nn.init.constant_(last.bias, -40.0)  # attention ~ 0: the block passes the image through
    torch.testing.assert_close(block(image, pose)[0], image)
    nn.init.constant_(last.bias, 40.0)  # attention ~ 1: the full residual
    torch.testing.assert_close(block(image, pose)[0], image + block.image_path(image))


def test_make_norm_kinds():
    inst = make_norm("instance", 5)
    assert isinstance(inst, nn.InstanceNorm2d) and inst.affine and not inst.track_running_stats
    assert isinstance(make_norm("batch", 5), nn.BatchNorm2d)
    assert isinstance(make_norm("none", 5), nn.Identity)
    with pytest.raises(ValueError, match="group"):
        make_norm("group", 5)


# --------------------------------------------------------------------------------------------------------- FPTN


def test_fptn_structure_follows_the_config():
    g = FPTN(TINY, num_landmarks=5, face_size=32)
    assert g.widths == [8, 16, 16]  # doubling, capped by max_channels
    assert _convs(g.image_encoder)[0].in_channels == 3 and _convs(g.image_encoder)[0].kernel_size == (7, 7)
    assert _convs(g.pose_encoder)[0].in_channels == 10  # cond || target heatmaps
    assert [c.stride for c in _convs(g.image_encoder)] == [(1, 1), (2, 2), (2, 2)]
    assert len(g.blocks) == 2
    assert _convs(g.blocks[0].pose_path)[0].in_channels == 16
    assert _convs(g.blocks[1].pose_path)[0].in_channels == 32
    dec = _convs(g.decoder)
    assert [(c.in_channels, c.out_channels) for c in dec] == [(16, 16), (16, 8), (8, 3)]
    with pytest.raises(ValueError, match="divisible"):
        FPTN(TINY, 5, 30)


@pytest.mark.parametrize(("face", "heat", "norm"), [(32, 16, "instance"), (64, 64, "batch"), (32, 32, "none")])
def test_fptn_shapes_range_and_gradients(face, heat, norm):
    torch.manual_seed(0)
    cfg = FPTNConfig(channels=8, max_channels=16, downsample=2, blocks=2, norm=norm)
    g = FPTN(cfg, num_landmarks=5, face_size=face)
    image = torch.rand(2, 3, face, face)
    cond = torch.rand(2, 5, heat, heat, requires_grad=True)
    target = torch.rand(2, 5, heat, heat, requires_grad=True)
    out = g(image, cond, target)
    assert out.shape == (2, 3, face, face)
    assert out.min() >= 0 and out.max() <= 1
    (out - torch.rand_like(out)).abs().mean().backward()
    # gradients reach both heatmap inputs (what lets FPTN supervise the landmark stream in SHT) ...
    assert cond.grad is not None and cond.grad.abs().sum() > 0
    assert target.grad is not None and target.grad.abs().sum() > 0
    # ... and every generator parameter
    for name, p in g.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert sum(p.grad.abs().sum() for p in g.parameters()) > 0
    assert _convs(g.pose_encoder)[0].weight.grad.abs().sum() > 0


def test_fptn_rejects_wrong_inputs():
    g = FPTN(TINY, 5, 32)
    with pytest.raises(ValueError, match="image"):
        g(torch.rand(1, 3, 16, 16), torch.rand(1, 5, 8, 8), torch.rand(1, 5, 8, 8))
    with pytest.raises(ValueError, match="cond_heatmaps"):
        g(torch.rand(1, 3, 32, 32), torch.rand(1, 4, 8, 8), torch.rand(1, 5, 8, 8))


def test_fptn_learns_to_move_a_blob():
    """Pose transfer on a fixed tiny batch: the blob at the cond heatmap peak must appear at the target peak."""
    torch.manual_seed(0)
    face, heat = 32, 16
    cond_xy, tar_xy = [(10.0, 12.0), (20.0, 8.0)], [(22.0, 20.0), (9.0, 22.0)]
    cond_h = _blobs(heat, [(x / 2, y / 2) for x, y in cond_xy], 1.0)
    tar_h = _blobs(heat, [(x / 2, y / 2) for x, y in tar_xy], 1.0)
    cond_i = (0.2 + 0.7 * _blobs(face, cond_xy, 2.5)).expand(-1, 3, -1, -1).contiguous()
    tar_i = (0.2 + 0.7 * _blobs(face, tar_xy, 2.5)).expand(-1, 3, -1, -1).contiguous()
    g = FPTN(TINY, num_landmarks=1, face_size=face)
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = (g(cond_i, cond_h, tar_h) - tar_i).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    copy_loss = (cond_i - tar_i).abs().mean().item()
    assert losses[-1] < 0.25 * losses[0]
    assert losses[-1] < 0.5 * copy_loss  # better than returning the condition face unchanged
    with torch.no_grad():
        out = g(cond_i, cond_h, tar_h)[:, :1]
    at_target = _blobs(face, tar_xy, 2.5) > 0.5
    assert out[at_target].mean() > 0.35  # background is 0.2: a blob has appeared at the target position


# ------------------------------------------------------------------------------------------------ discriminators


def test_patch_discriminator_layout_and_spectral_norm():
    d = PatchDiscriminator(in_channels=6, channels=8, layers=3)
    convs = _convs(d)
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)] * 2
    assert [c.out_channels for c in convs] == [8, 16, 32, 64, 1]
    assert all(c.kernel_size == (4, 4) for c in convs)
    assert all(parametrize.is_parametrized(c, "weight") for c in convs)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in d.modules()) == 3
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in d.modules()) == 4
    out = d(torch.rand(2, 6, 64, 64))
    assert out.shape == (2, 1, 6, 6) == (2, 1, d.output_size(64), d.output_size(64))
    assert not isinstance(list(d.body)[-1], nn.Sigmoid)
    plain = PatchDiscriminator(3, channels=8, layers=2, norm="none", spectral=False)
    assert not any(parametrize.is_parametrized(c, "weight") for c in _convs(plain))
    assert plain(torch.rand(1, 3, 32, 32)).shape == (1, 1, plain.output_size(32), plain.output_size(32))


def test_appearance_and_shape_discriminators():
    torch.manual_seed(0)
    da = AppearanceDiscriminator(channels=8, layers=3).eval()
    ds = ShapeDiscriminator(num_landmarks=5, channels=8, layers=3).eval()
    assert _convs(da)[0].in_channels == 6 and _convs(ds)[0].in_channels == 8
    cond, img = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(da(cond, img), da.body(torch.cat([cond, img], 1)))
    assert da(cond, img).shape == (2, 1, 6, 6)
    small = torch.rand(2, 5, 16, 16)
    big = F.interpolate(small, size=(64, 64), mode="bilinear", align_corners=False)
    out = ds(small, img)
    assert out.shape == (2, 1, 6, 6)
    torch.testing.assert_close(out, ds(big, img))  # heatmaps resized to the image size
    torch.testing.assert_close(out, ds.body(torch.cat([big, img], 1)))
    cfg = load_config("small").fptn
    assert _convs(ShapeDiscriminator.from_config(cfg, 68))[0].in_channels == 71
    assert _convs(AppearanceDiscriminator.from_config(cfg))[0].out_channels == cfg.disc_channels


# --------------------------------------------------------------------------------------------------------- VGG


def _random_vgg_arrays(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(64, 3, 3, 3), (64,), (64, 64, 3, 3), (64,)]
    return [rng.normal(0, 0.05, s).astype(np.float32) for s in shapes]


def test_vgg_round_trip_through_npz(tmp_path):
    vgg = VGG19Conv12.from_arrays(*_random_vgg_arrays())
    path = tmp_path / "w.npz"
    vgg.save_npz(path)
    with np.load(path) as data:
        assert sorted(data.files) == sorted(
            ["block1_conv1.weight", "block1_conv1.bias", "block1_conv2.weight", "block1_conv2.bias"]
        )
        assert data["block1_conv2.weight"].shape == (64, 64, 3, 3) and data["block1_conv2.weight"].dtype == np.float32
    again = VGG19Conv12.from_npz(path)
    for a, b in zip(vgg.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(vgg(x), again(x))


def test_vgg_caffe_bgr_convention_on_a_constant_image():
    w1 = np.zeros((64, 3, 3, 3), np.float32)
    b1 = np.zeros(64, np.float32)
    w2 = np.zeros((64, 64, 3, 3), np.float32)
    b2 = np.zeros(64, np.float32)
    for c in range(3):  # centre taps only: output channel c = input channel c (+ 200 to survive the ReLU)
        w1[c, c, 1, 1] = 1.0
        b1[c] = 200.0
        w2[c, c, 1, 1] = 1.0
    vgg = VGG19Conv12.from_arrays(w1, b1, w2, b2)
    r, g, b = 0.2, 0.5, 0.8
    x = torch.tensor([r, g, b]).view(1, 3, 1, 1).expand(1, 3, 6, 6)
    out = vgg(x)
    assert out.shape == (1, 64, 6, 6)
    # Caffe: channel 0 is blue, 0-255, minus the B/G/R mean
    expected = [b * 255 - 103.939 + 200, g * 255 - 116.779 + 200, r * 255 - 123.68 + 200]
    for c in range(3):
        torch.testing.assert_close(out[0, c], torch.full((6, 6), expected[c]), rtol=0, atol=1e-3)
    assert torch.count_nonzero(out[0, 3:]) == 0


def test_vgg_is_frozen_and_stays_in_eval():
    vgg = VGG19Conv12.from_arrays(*_random_vgg_arrays())
    assert all(not p.requires_grad for p in vgg.parameters())
    assert not vgg.training
    vgg.train()
    assert not vgg.training and not any(m.training for m in vgg.modules())
    holder = nn.Sequential(vgg)
    holder.train()
    assert not vgg.training
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    vgg(x).mean().backward()  # frozen weights, but the perceptual loss still reaches the image
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in vgg.parameters())


def test_vgg_missing_or_malformed_files(tmp_path):
    missing = tmp_path / "nowhere" / "vgg.npz"
    with pytest.raises(FileNotFoundError) as err:
        VGG19Conv12.from_npz(missing)
    assert str(missing) in str(err.value) and "fptn.vgg_weights" in str(err.value)
    assert "conv1_2" in str(err.value)
    with pytest.raises(FileNotFoundError, match="fptn.vgg_weights"):
        VGG19Conv12.from_npz("")

    arrays = dict(
        zip(
            ["block1_conv1.weight", "block1_conv1.bias", "block1_conv2.weight", "block1_conv2.bias"],
            _random_vgg_arrays(),
            strict=True,
        )
    )
    bad_shape = tmp_path / "shape.npz"
    np.savez(bad_shape, **{**arrays, "block1_conv1.weight": np.zeros((64, 3, 5, 5), np.float32)})
    with pytest.raises(ValueError) as err:
        VGG19Conv12.from_npz(bad_shape)
    assert str(bad_shape) in str(err.value) and "block1_conv1.weight" in str(err.value)

    bad_name = tmp_path / "name.npz"
    np.savez(bad_name, **{k.replace("conv2", "conv3"): v for k, v in arrays.items()})
    with pytest.raises(ValueError) as err:
        VGG19Conv12.from_npz(bad_name)
    assert str(bad_name) in str(err.value) and "block1_conv2.weight" in str(err.value)

    not_npz = tmp_path / "junk.npz"
    not_npz.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="junk.npz"):
        VGG19Conv12.from_npz(not_npz)
    with pytest.raises(ValueError, match="block1_conv2.bias"):
        VGG19Conv12.from_arrays(*_random_vgg_arrays()[:3], np.zeros(63, np.float32))


@pytest.mark.skipif(not REAL_VGG.is_file(), reason=f"real VGG-19 weights not available: {REAL_VGG} is absent")
def test_real_vgg_weights():
    vgg = VGG19Conv12.from_npz(REAL_VGG)
    torch.manual_seed(0)
    a, b = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    fa, fb = vgg(a), vgg(b)
    assert fa.shape == (1, 64, 24, 24)
    assert fa.abs().sum() > 0 and torch.isfinite(fa).all() and fa.min() >= 0
    assert (fa - fb).abs().mean() > 1e-2 * fa.abs().mean()


# ------------------------------------------------------------------------------------------------------ config


def test_fptn_config_defaults_presets_and_validation():
    paper = load_config("paper").fptn
    assert (paper.channels, paper.max_channels, paper.downsample, paper.blocks, paper.norm) == (
        64,
        256,
        2,
        6,
        "instance",
    )
    assert paper.betas == [0.5, 0.999] and paper.vgg_weights == "" and paper.spectral_norm
    small = load_config("small").fptn
    assert (small.channels, small.max_channels, small.blocks, small.face_size, small.warp) == (32, 64, 3, 64, 0.06)
    assert paper.face_size == 0 and paper.warp == 0
    assert load_config("small", ["fptn.vgg_weights=/x/w.npz"]).fptn.vgg_weights == "/x/w.npz"
    for override, message in (("fptn.norm=group", "fptn.norm"), ("fptn.disc_norm=layer", "fptn.disc_norm")):
        with pytest.raises(ConfigError) as err:
            load_config("small", [override])
        assert message in str(err.value) and "\n" not in str(err.value)


def test_similarity_fit_recovers_a_similarity():
    g = torch.Generator().manual_seed(0)
    src = torch.rand(2, 10, 2, generator=g) * 50
    ang, sc = torch.tensor([0.3, -0.5]), torch.tensor([1.2, 0.8])
    rot = torch.stack(
        [torch.stack([sc * ang.cos(), -sc * ang.sin()], -1), torch.stack([sc * ang.sin(), sc * ang.cos()], -1)], -2
    )
    dst = src @ rot.transpose(1, 2) + torch.tensor([[[3.0, -4.0]], [[10.0, 2.0]]])
    t = similarity_fit(src, dst)
    torch.testing.assert_close(src @ t[:, :, :2].transpose(1, 2) + t[:, None, :, 2], dst, atol=1e-4, rtol=0)


def test_landmark_warp_moves_the_face_to_the_target_landmarks():
    torch.manual_seed(0)
    image = torch.rand(1, 3, 32, 32)
    pts = torch.rand(1, 12, 2) * 20 + 6
    torch.testing.assert_close(landmark_warp(image, pts, pts, 0.1), image, atol=1e-5, rtol=0)  # same pose
    # target = condition shifted by 3 px: the warp shifts the image by 3 px (inside, away from the border)
    out = landmark_warp(image, pts, pts + torch.tensor([3.0, 0.0]), 0.1)
    torch.testing.assert_close(out[..., 4:28, 6:28], image[..., 4:28, 3:25], atol=1e-5, rtol=0)
    # one landmark moved: the image moves near it only, and the warp has a gradient for that landmark
    tar = pts.clone().requires_grad_(True)
    moved = tar + torch.tensor([2.0, 0.0]) * (torch.arange(12) == 0).float()[None, :, None]
    out = landmark_warp(image, pts, moved, 0.05)
    (out * torch.rand_like(out)).sum().backward()
    assert tar.grad is not None and tar.grad[0, 0].abs().sum() > 0


def test_fptn_with_warp_depends_on_the_pose():
    torch.manual_seed(0)
    cfg = FPTNConfig(channels=8, max_channels=16, downsample=2, blocks=2, warp=0.08)
    g = FPTN(cfg, num_landmarks=5, face_size=32)
    assert _convs(g.image_encoder)[0].in_channels == 6
    image = torch.rand(2, 3, 32, 32)
    c = torch.arange(16, dtype=torch.float32) + 0.5

    def render(p):
        return torch.exp(
            -(
                (c[None, None, None, :] - p[..., 0, None, None] / 2) ** 2
                + (c[None, None, :, None] - p[..., 1, None, None] / 2) ** 2
            )
            / 2
        )

    pts = torch.rand(2, 5, 2) * 16 + 8
    target = (pts + 2.0).requires_grad_(True)
    out = g(image, render(pts), render(target))
    assert out.shape == (2, 3, 32, 32)
    out.mean().backward()
    assert target.grad is not None and target.grad.abs().sum() > 0
