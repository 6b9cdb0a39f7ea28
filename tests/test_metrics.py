"""Tests for sht.metrics: hand-worked NME cases, CED/AUC/FR, Y conversion, PSNR/SSIM against scikit-image."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sht.data.degradation import quantize
from sht.data.formats import IBUG68, LandmarkScheme
from sht.metrics import (
    auc,
    ced,
    ced_grid,
    failure_rate,
    nme,
    normalizer,
    psnr_ssim_y_uint8,
    psnr_y,
    rgb_to_y,
    ssim_y,
    summarize_nme,
)

PROTOCOL = Path(__file__).resolve().parents[2] / "shared" / "tools" / "protocol.py"


def _protocol():
    if not PROTOCOL.is_file():
        pytest.skip(f"reference protocol not available: {PROTOCOL} does not exist")
    spec = importlib.util.spec_from_file_location("_sht_reference_protocol", PROTOCOL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, mod)
    spec.loader.exec_module(mod)
    return mod


def _face68(rng: np.random.Generator | None = None) -> np.ndarray:
    """A 68-point GT with outer eye corners 36=(10, 20) and 45=(20, 20) (10 px apart)."""
    rng = rng or np.random.default_rng(0)
    pts = rng.uniform(12, 18, size=(68, 2))
    pts[36] = (10.0, 20.0)
    pts[45] = (20.0, 20.0)
    return pts


# ----------------------------------------------------------------------------------------------------
# NME and normalisers
# ----------------------------------------------------------------------------------------------------


def test_nme_inter_ocular_hand_worked():
    gt = _face68()
    pred = gt + np.array([3.0, 4.0])  # error 5 at every point, eye corners 10 apart
    assert normalizer(gt, "inter_ocular").tolist() == [10.0]
    out = nme(pred, gt)
    assert out.shape == (1,) and out.dtype == np.float64
    assert out[0] == pytest.approx(0.5, abs=1e-12)
    # batched, and torch input gives the same
    batch_gt = np.stack([gt, gt * 2])  # second image: corners 20 apart
    batch_pred = batch_gt + np.array([3.0, 4.0])
    np.testing.assert_allclose(nme(batch_pred, batch_gt), [0.5, 0.25], atol=1e-12)
    np.testing.assert_allclose(nme(torch.from_numpy(batch_pred).float(), torch.from_numpy(batch_gt)), [0.5, 0.25])


def test_nme_inter_ocular_matches_reference():
    proto = _protocol()
    rng = np.random.default_rng(1)
    for _ in range(5):
        gt = rng.uniform(0, 128, size=(68, 2))
        pred = gt + rng.normal(0, 3, size=(68, 2))
        assert nme(pred, gt)[0] == pytest.approx(proto.nme_io(pred, gt), rel=1e-12)


def test_normalizer_inter_pupil_hand_worked():
    gt = np.zeros((68, 2))
    gt[36:42] = [(0, 0), (2, 0), (4, 0), (0, 2), (2, 2), (4, 2)]  # left eye centre (2, 1)
    gt[42:48] = [(10, 4), (12, 4), (14, 4), (10, 6), (12, 6), (14, 6)]  # right eye centre (12, 5)
    expected = math.hypot(10, 4)
    assert normalizer(gt, "inter_pupil")[0] == pytest.approx(expected, rel=1e-12)
    pred = gt + np.array([0.0, 1.0])
    assert nme(pred, gt, norm="inter_pupil")[0] == pytest.approx(1.0 / expected, rel=1e-12)


def test_box_diagonal_face_width_hand_worked():
    # Points on a 8 x 2 rectangle (x 1..9, y 3..5)
    gt = np.array([[1.0, 3.0], [9.0, 3.0], [9.0, 5.0], [1.0, 5.0], [5.0, 4.0]])
    assert normalizer(gt, "box")[0] == pytest.approx(4.0)  # sqrt(8 * 2)
    assert normalizer(gt, "diagonal")[0] == pytest.approx(math.sqrt(68.0))
    assert normalizer(gt, "face_width")[0] == pytest.approx(8.0)
    boxes = np.array([[0.0, 0.0, 9.0, 4.0]])
    assert normalizer(gt, "box", boxes=boxes)[0] == pytest.approx(6.0)
    assert normalizer(gt, "diagonal", boxes=boxes)[0] == pytest.approx(math.sqrt(97.0))
    assert normalizer(gt, "face_width", boxes=boxes)[0] == pytest.approx(9.0)
    pred = gt + np.array([0.6, 0.8])  # error 1 per point; no scheme needed for 5 points
    assert nme(pred, gt, norm="box")[0] == pytest.approx(0.25)
    assert nme(pred, gt, norm="face_width", boxes=boxes)[0] == pytest.approx(1 / 9)


def test_visibility_mask():
    gt = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    pred = gt.copy()
    pred[0] += (3, 4)  # error 5
    pred[1] += (0, 1)  # error 1
    pred[2] += (6, 8)  # error 10
    boxes = np.array([[0.0, 0.0, 10.0, 10.0]])
    assert nme(pred, gt, norm="box", boxes=boxes)[0] == pytest.approx(16 / 4 / 10)
    vis = np.array([[True, True, False, True]])  # drop the 10-px error: (5 + 1 + 0) / 3 / 10
    assert nme(pred, gt, norm="box", boxes=boxes, visible=vis)[0] == pytest.approx(0.2)
    # invisible points may hold garbage (NaN) without affecting the result
    gt_nan, pred_nan = gt.copy(), pred.copy()
    gt_nan[2] = np.nan
    pred_nan[2] = np.nan
    assert nme(pred_nan, gt_nan, norm="box", boxes=boxes, visible=vis)[0] == pytest.approx(0.2)
    # with no boxes, the box comes from the visible GT points only
    assert nme(pred_nan, gt_nan, norm="face_width", visible=vis)[0] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="no visible landmark"):
        nme(pred, gt, norm="box", boxes=boxes, visible=np.zeros((1, 4), bool))


def test_normalizer_errors():
    gt = _face68()
    with pytest.raises(ValueError, match="unknown normaliser kind 'bogus'"):
        normalizer(gt, "bogus")
    with pytest.raises(ValueError, match="unknown normaliser kind"):
        nme(gt, gt, norm="interocular")
    same = gt.copy()
    same[45] = same[36]
    with pytest.raises(ValueError, match="zero or non-finite"):
        nme(same, same)
    flat = np.zeros((68, 2))
    flat[:, 0] = np.arange(68)  # zero height -> sqrt(w * h) = 0
    with pytest.raises(ValueError, match="'box' is zero or non-finite"):
        normalizer(flat, "box")
    with pytest.raises(ValueError, match="needs a landmark scheme"):
        normalizer(np.random.default_rng(0).uniform(size=(5, 2)), "inter_ocular")
    no_eyes = LandmarkScheme("noeyes", 68, IBUG68.flip, outer_eyes=(36, 45))
    with pytest.raises(ValueError, match="no eye points"):
        normalizer(gt, "inter_pupil", scheme=no_eyes)
    with pytest.raises(ValueError, match="boxes: shape mismatch"):
        normalizer(gt, "box", boxes=np.zeros((2, 4)))


def test_nme_shape_mismatch():
    gt = _face68()
    with pytest.raises(ValueError, match="shape mismatch"):
        nme(gt[:67], gt)
    with pytest.raises(ValueError, match="shape mismatch"):
        nme(np.stack([gt, gt]), gt)
    with pytest.raises(ValueError, match=r"expected shape \(N, K, 2\)"):
        nme(gt[:, :1], gt[:, :1])
    with pytest.raises(ValueError, match="visible: shape mismatch"):
        nme(gt, gt, visible=np.ones((1, 5), bool))


# ----------------------------------------------------------------------------------------------------
# CED / AUC / failure rate
# ----------------------------------------------------------------------------------------------------


def test_ced_auc_fr_hand_worked():
    # All perfect: CED == 1 everywhere -> AUC 1; all beyond threshold -> AUC 0, FR 1.
    assert auc([0.0, 0.0]) == pytest.approx(1.0)
    assert failure_rate([0.0, 0.0]) == 0.0
    assert auc([0.5, 0.2]) == 0.0
    assert failure_rate([0.5, 0.2]) == 1.0
    # Single NME of 0.05 with a coarse grid: xs = 0, .05, .1 ; ys = 0, 1, 1 -> area .025 + .05 = .075 -> .75
    xs, ys = ced([0.05], threshold=0.1, step=0.05)
    np.testing.assert_allclose(xs, [0.0, 0.05, 0.1])
    np.testing.assert_allclose(ys, [0.0, 1.0, 1.0])
    assert auc([0.05], threshold=0.1, step=0.05) == pytest.approx(0.75)
    # Half the images fail; the others are perfect -> AUC 0.5, FR 0.5
    assert auc([0.0, 0.3]) == pytest.approx(0.5)
    assert failure_rate([0.0, 0.3]) == 0.5
    # Exactly at the threshold is not a failure
    assert failure_rate([0.1, 0.10001]) == 0.5
    # Uniform NMEs in [0, 0.1]: the CED is ~x / 0.1 -> AUC ~ 0.5
    assert auc(np.linspace(0, 0.1, 10001)) == pytest.approx(0.5, abs=1e-3)


def test_ced_grid_and_summary():
    xs, ys = ced([0.02, 0.07, 0.2])
    assert xs[0] == 0 and xs[-1] == pytest.approx(0.1) and len(xs) == 1001
    assert ys[0] == 0 and ys[-1] == pytest.approx(2 / 3)
    assert np.all(np.diff(ys) >= 0)
    s = summarize_nme([0.02, 0.07, 0.2])
    assert set(s) == {"nme", "auc", "fr", "n"}
    assert s["n"] == 3 and s["nme"] == pytest.approx(0.29 / 3) and s["fr"] == pytest.approx(1 / 3)
    assert s["auc"] == auc([0.02, 0.07, 0.2])


def test_auc_fr_match_reference():
    proto = _protocol()
    rng = np.random.default_rng(2)
    cases = [
        rng.gamma(2.0, 0.025, size=200),
        rng.uniform(0, 0.15, size=37),
        np.array([0.1, 0.1, 0.0999, 0.1001, 0.0]),  # on and around the threshold and grid points
        np.round(rng.uniform(0, 0.12, size=50), 4),  # values on the CED grid
    ]
    for nmes in cases:
        for thr in (0.08, 0.10):  # thresholds whose np.arange grid has no extra point
            ref_auc, ref_fr = proto.auc_fr(nmes, thr=thr)
            assert auc(nmes, threshold=thr) == ref_auc
            assert failure_rate(nmes, threshold=thr) == ref_fr


def test_ced_grid_ends_at_threshold():
    for thr in (0.05, 0.07, 0.08, 0.10, 0.2):
        xs = ced_grid(thr)
        assert len(xs) == round(thr / 1e-4) + 1 and xs[-1] == pytest.approx(thr, abs=1e-15)
    # same grid as np.arange(0, thr + step, step) where that does not overshoot (the protocol's 10%)
    np.testing.assert_array_equal(ced_grid(0.10), np.arange(0, 0.10 + 1e-4, 1e-4))
    np.testing.assert_array_equal(ced_grid(0.08), np.arange(0, 0.08 + 1e-4, 1e-4))
    # a perfect method has AUC exactly 1 at any threshold (an extra point past the threshold would give > 1)
    assert auc([0.0], threshold=0.07) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="whole multiple of step"):
        ced_grid(0.1, 0.03)


def test_ced_errors():
    with pytest.raises(ValueError, match="empty"):
        auc([])
    with pytest.raises(ValueError, match="NaN"):
        failure_rate([0.1, float("nan")])
    with pytest.raises(ValueError, match="threshold"):
        auc([0.1], threshold=0)


# ----------------------------------------------------------------------------------------------------
# Y channel, PSNR, SSIM
# ----------------------------------------------------------------------------------------------------


def test_rgb_to_y_pure_colours():
    cols = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(cols)
    assert y.dtype == np.float64 and y.shape == (1, 5)
    np.testing.assert_allclose(y[0], [235.0, 16.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-9)
    t = torch.from_numpy(cols).permute(2, 0, 1).double() / 255  # (3, 1, 5) in [0, 1]
    yt = rgb_to_y(t)
    assert yt.shape == (1, 1, 5) and yt.dtype == torch.float64
    np.testing.assert_allclose(yt[0].numpy(), y, atol=1e-9)
    assert rgb_to_y(t[None]).shape == (1, 1, 1, 5)
    assert rgb_to_y(t, dtype=torch.float32).dtype == torch.float32
    # integer torch tensors are 8-bit levels
    np.testing.assert_allclose(rgb_to_y(torch.from_numpy(cols).permute(2, 0, 1))[0].numpy(), y, atol=1e-9)


def test_rgb_to_y_torch_numpy_agree_and_no_uint8_wrap():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    img[0, 0] = 255
    img[0, 1] = 0
    y_np = rgb_to_y(img)
    y_t = rgb_to_y(torch.from_numpy(img).permute(2, 0, 1)[None].double() / 255)
    np.testing.assert_allclose(y_t[0, 0].numpy(), y_np, atol=1e-10)
    assert y_np.min() >= 16 - 1e-9 and y_np.max() <= 235 + 1e-9
    proto = _protocol() if PROTOCOL.is_file() else None
    if proto is not None:
        np.testing.assert_array_equal(y_np, proto.y_channel(img))


def _to_tensor(imgs: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).double() / 255


def _sk_psnr_ssim(sr: np.ndarray, hr: np.ndarray) -> tuple[float, float]:
    ys, yh = rgb_to_y(sr), rgb_to_y(hr)
    p = peak_signal_noise_ratio(yh, ys, data_range=255)
    s = structural_similarity(yh, ys, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return p, s


def _image_pairs() -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(4)
    astro = skdata.astronaut()
    pairs = []
    # random images, including a pair spanning extreme values
    a = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    b = rng.integers(0, 256, size=(32, 40, 3), dtype=np.uint8)
    pairs.append((a, b))
    ext_hr = rng.choice(np.array([0, 255], np.uint8), size=(24, 24, 3))
    ext_sr = 255 - ext_hr  # uint8 differences would wrap here
    ext_sr[:12] = ext_hr[:12]
    pairs.append((ext_sr, ext_hr))
    # structured: astronaut crops plus noise (clipped to 0..255, so saturated pixels occur)
    for y0, x0, sigma in ((100, 150, 5.0), (0, 0, 20.0), (200, 300, 60.0)):
        hr = astro[y0 : y0 + 48, x0 : x0 + 48]
        sr = np.clip(hr.astype(np.float64) + rng.normal(0, sigma, hr.shape), 0, 255).round().astype(np.uint8)
        pairs.append((sr, hr))
    white = np.full((16, 16, 3), 255, np.uint8)
    black_patch = white.copy()
    black_patch[4:9, 3:12] = 0
    pairs.append((black_patch, white))
    return pairs


def test_psnr_ssim_match_skimage():
    pairs = _image_pairs()
    for sr, hr in pairs:
        ref_p, ref_s = _sk_psnr_ssim(sr, hr)
        p, s = psnr_ssim_y_uint8(sr, hr)
        assert p == pytest.approx(ref_p, abs=1e-6)
        assert s == pytest.approx(ref_s, abs=1e-5)
        # torch path, float64 in [0, 1]
        t_sr, t_hr = _to_tensor([sr]), _to_tensor([hr])
        assert psnr_y(t_sr, t_hr)[0] == pytest.approx(ref_p, abs=1e-6)
        assert ssim_y(t_sr, t_hr)[0] == pytest.approx(ref_s, abs=1e-5)
        # float32 tensors quantised to 8 bits and measured with to_8bit reproduce the uint8 figures
        q_sr, q_hr = quantize(t_sr.float()), quantize(t_hr.float())
        assert psnr_y(q_sr, q_hr, to_8bit=True)[0] == pytest.approx(ref_p, abs=1e-6)
        assert ssim_y(q_sr, q_hr, to_8bit=True)[0] == pytest.approx(ref_s, abs=1e-5)


def test_psnr_ssim_batched_per_image():
    rng = np.random.default_rng(5)
    astro = skdata.astronaut()
    hrs = [astro[i * 40 : i * 40 + 32, 100:132] for i in range(3)]
    srs = [np.clip(h + rng.normal(0, 10, h.shape), 0, 255).astype(np.uint8) for h in hrs]
    p, s = psnr_y(_to_tensor(srs), _to_tensor(hrs)), ssim_y(_to_tensor(srs), _to_tensor(hrs))
    assert p.shape == s.shape == (3,) and p.dtype == s.dtype == np.float64
    for i in range(3):
        ref_p, ref_s = _sk_psnr_ssim(srs[i], hrs[i])
        assert p[i] == pytest.approx(ref_p, abs=1e-6)
        assert s[i] == pytest.approx(ref_s, abs=1e-5)
    # numpy batches (N, H, W, 3) give the same
    np.testing.assert_allclose(psnr_y(np.stack(srs), np.stack(hrs)), p, atol=1e-9)
    np.testing.assert_allclose(ssim_y(np.stack(srs), np.stack(hrs)), s, atol=1e-9)


def test_psnr_ssim_reference_protocol():
    proto = _protocol()
    for sr, hr in _image_pairs()[:3]:
        ref_p, ref_s = proto.psnr_ssim_y(sr, hr)
        p, s = psnr_ssim_y_uint8(sr, hr)
        assert p == pytest.approx(ref_p, abs=1e-6)
        assert s == pytest.approx(ref_s, abs=1e-5)


def test_identical_images():
    img = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    assert np.all(np.isinf(psnr_y(img, img)))
    np.testing.assert_allclose(ssim_y(img, img), 1.0, atol=1e-12)


def test_quantize():
    x = torch.tensor([-0.2, 0.0, 0.5 / 255, 0.49 / 255, 0.3, 1.0, 1.7])
    q = quantize(x)
    assert q.dtype == x.dtype
    levels = (q.double() * 255).numpy()
    np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)
    np.testing.assert_allclose(levels, [0, 0, 1, 0, 77, 255, 255], atol=1e-4)  # 76.5 rounds up
    assert torch.equal(quantize(q), q)
    r = torch.rand(2, 3, 8, 8)
    assert torch.max(torch.abs(quantize(r) - r)) <= 0.5 / 255 + 1e-7


def test_image_metric_errors():
    a = torch.rand(2, 3, 16, 16)
    with pytest.raises(ValueError, match="shape mismatch"):
        psnr_y(a, a[:1])
    with pytest.raises(ValueError, match="shape mismatch"):
        ssim_y(a, a[..., :15])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_y(a[..., :8, :8], a[..., :8, :8])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        psnr_y(a * 255, a * 255)
    with pytest.raises(ValueError, match="uint8"):
        psnr_ssim_y_uint8(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)))
    with pytest.raises(ValueError, match="expected a"):
        rgb_to_y(torch.rand(2, 4, 8, 8))
