"""Generated faces: determinism, framing, landmark/feature agreement, file round trip, variety."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from sht.data.formats import IBUG68, read_pts, scan_pts_folder
from sht.data.synthetic import (
    MEAN_SHAPE_3D,
    SyntheticFaceConfig,
    _Canvas,
    generate,
    render_face,
    write_folder,
)

SIZE = 128
# Faces whose features are all visible (no closed eyes, glasses, fringe or beard), without pixel noise.
CLEAN = SyntheticFaceConfig(
    image_size=SIZE, blink_prob=0.0, glasses_prob=0.0, bangs_prob=0.0, beard_prob=0.0, noise_max=0.0
)


def _lum(a: np.ndarray) -> np.ndarray:
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def _at(a: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Value of the pixel containing continuous point ``p``."""
    return a[int(np.floor(p[1])), int(np.floor(p[0]))]


def _inside(poly: np.ndarray, size: int) -> np.ndarray:
    m = Image.new("L", (size, size), 0)
    ImageDraw.Draw(m).polygon(np.floor(poly).ravel().tolist(), fill=1)
    return np.asarray(m, dtype=bool)


@pytest.fixture(scope="module")
def clean_faces() -> list[tuple[Image.Image, np.ndarray]]:
    return generate(40, seed=7, cfg=CLEAN)


def test_template_is_ibug68_and_flip_consistent() -> None:
    M = MEAN_SHAPE_3D
    assert M.shape == (68, 3) and M.dtype == np.float64
    assert 0.9 < np.linalg.norm(M[36] - M[45]) < 1.1
    mirrored = M[list(IBUG68.flip)] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(mirrored, M, atol=1e-9)
    x, y = M[:, 0], M[:, 1]
    assert np.all(np.diff(x[:9]) > 0) and np.all(np.diff(x[8:17]) > 0)  # jaw runs image-left to image-right
    assert np.argmax(y[:17]) == 8  # chin lowest
    assert x[36] < x[39] < x[42] < x[45] and x[17] < x[21] < x[22] < x[26]
    assert y[37] < y[41] and y[38] < y[40] and y[43] < y[47] and y[44] < y[46]  # upper lids above lower
    assert np.all(np.diff(y[27:31]) > 0) and np.argmax(M[:, 2]) == 30  # bridge downwards, tip foremost
    assert np.all(np.diff(x[31:36]) > 0) and x[48] < x[60] < x[64] < x[54]
    assert y[51] < y[62] <= y[66] < y[57]
    assert y[17:27].max() < y[36:48].min() < y[36:48].max() < y[30] < y[33] < y[51]


def test_render_types_and_determinism() -> None:
    cfg = SyntheticFaceConfig(image_size=64)
    a = generate(3, seed=5, cfg=cfg)
    b = generate(3, seed=5, cfg=cfg)
    for (ia, pa), (ib, pb) in zip(a, b, strict=True):
        assert ia.mode == "RGB" and ia.size == (64, 64)
        assert pa.shape == (68, 2) and pa.dtype == np.float64 and np.all(np.isfinite(pa))
        assert np.array_equal(np.asarray(ia), np.asarray(ib)) and np.array_equal(pa, pb)
    img, pts = render_face(np.random.default_rng([5, 2]), cfg)  # face i depends only on (seed, i)
    assert np.array_equal(np.asarray(img), np.asarray(a[2][0])) and np.array_equal(pts, a[2][1])
    assert not np.array_equal(np.asarray(a[0][0]), np.asarray(a[1][0]))
    assert not np.allclose(a[0][1], a[1][1])
    assert not np.allclose(generate(1, seed=6, cfg=cfg)[0][1], a[0][1])


def test_face_does_not_depend_on_image_size() -> None:
    small = render_face(np.random.default_rng([4, 1]), SyntheticFaceConfig(image_size=64))[1]
    large = render_face(np.random.default_rng([4, 1]), SyntheticFaceConfig(image_size=160))[1]
    np.testing.assert_allclose(small / 64, large / 160, atol=1e-9)


def test_framing_follows_config() -> None:
    cfg = SyntheticFaceConfig(image_size=96)
    for _, pts in generate(30, seed=3, cfg=cfg):
        assert pts.min() > 0 and pts.max() < 96
        lo, hi = pts.min(0), pts.max(0)
        ratio = float(max(hi - lo)) / (96 / cfg.framing)
        assert 1 / (1 + cfg.size_jitter) - 1e-6 <= ratio <= 1 / (1 - cfg.size_jitter) + 1e-6
        assert np.all(np.abs((lo + hi) / 2 - 48) <= cfg.centre_jitter * 96 + 1e-6)


def test_frontal_neutral_face_is_the_projected_template() -> None:
    cfg = SyntheticFaceConfig(image_size=64, yaw=0, pitch=0, roll=0, identity=0, expression=0, perspective=(1e9, 1e9))
    _, pts = render_face(np.random.default_rng(0), cfg)
    tmpl = MEAN_SHAPE_3D[:, :2]
    scale = np.std(pts - pts.mean(0)) / np.std(tmpl - tmpl.mean(0))
    np.testing.assert_allclose(pts, (tmpl - tmpl.mean(0)) * scale + pts.mean(0), atol=1e-6)


def test_canvas_shapes_land_on_their_coordinates() -> None:
    """Discs and strokes drawn on the supersampled canvas are centred on their output-pixel coordinates."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:48, 0:48] + 0.5
    for s in (2, 3, 4):
        errors = []
        for _ in range(10):
            c = rng.uniform(10, 30, 2)
            canvas = _Canvas(48, s, Image.new("RGB", (48 * s, 48 * s)))
            canvas.disc(c, 2.3, (255, 255, 255, 255))
            canvas.line(np.array([[c[0] - 6, c[1] + 8], [c[0] + 6, c[1] + 8]]), (255, 255, 255, 255), 1.0)
            a = np.asarray(canvas.img.reduce(s), dtype=np.float64)[..., 0]
            disc, stroke = a * (yy < c[1] + 5), a * (yy > c[1] + 5)
            errors.append(
                [
                    (disc * xx).sum() / disc.sum() - c[0],
                    (disc * yy).sum() / disc.sum() - c[1],
                    (stroke * yy).sum() / stroke.sum() - c[1] - 8,
                ]
            )
        errors = np.abs(np.array(errors))
        assert errors.max() < 0.35 and errors.mean() < 0.1  # quantisation to canvas pixels only, no bias


def test_features_lie_at_their_landmarks(clean_faces: list[tuple[Image.Image, np.ndarray]]) -> None:
    for img, p in clean_faces:
        a = np.asarray(img, dtype=np.float64)
        L = _lum(a)
        iod = np.linalg.norm(p[45] - p[36])
        up = (p[27] - p[8]) / np.linalg.norm(p[27] - p[8])
        cheeks = [0.5 * (p[31] + p[2]), 0.5 * (p[35] + p[14])]
        skin = float(np.median([_at(L, c) for c in cheeks]))
        # Eyes: pupil/iris/lid line inside the six-point polygon, darker than the cheek.
        for eye in (p[36:42], p[42:48]):
            assert L[_inside(eye, SIZE)].min() < 0.75 * skin
        # Brows: the landmark pixels are darker than the forehead skin just above the inner brow ends.
        forehead = _at(L, 0.5 * (p[21] + p[22]) + up * 0.12 * iod)
        for j in (18, 19, 20, 23, 24, 25):
            assert _at(L, p[j]) < 0.85 * forehead
        # Nostrils: dark pixels just above the nostril base points 32 / 34 (the far one may be hidden by yaw).
        darkest = []
        for j in (32, 34):
            x, y = (p[j] + up * 0.04 * iod).astype(int)
            darkest.append(L[y - 1 : y + 2, x - 1 : x + 2].min())
        assert min(darkest) < 0.75 * skin
        # Lips (outer polygon minus the opening) are redder than the cheeks.
        lips = _inside(p[48:60], SIZE) & ~_inside(p[60:68], SIZE)
        lip_gr = a[lips][:, 1].mean() / a[lips][:, 0].mean()
        cheek_gr = np.mean([_at(a, c)[1] / max(_at(a, c)[0], 1.0) for c in cheeks])
        assert lip_gr < 0.92 * cheek_gr
        # An open mouth has a dark interior inside the inner lip polygon.
        if np.linalg.norm(p[66] - p[62]) > 0.1 * iod:
            assert L[_inside(p[60:68], SIZE)].min() < 0.5 * skin


def test_open_mouths_occur(clean_faces: list[tuple[Image.Image, np.ndarray]]) -> None:
    gaps = [np.linalg.norm(p[66] - p[62]) / np.linalg.norm(p[45] - p[36]) for _, p in clean_faces]
    assert sum(g > 0.1 for g in gaps) >= 5 and sum(g < 0.05 for g in gaps) >= 10


def test_variety_of_pose_and_identity(clean_faces: list[tuple[Image.Image, np.ndarray]]) -> None:
    pts = np.stack([p for _, p in clean_faces])
    iod = np.linalg.norm(pts[:, 45] - pts[:, 36], axis=1)
    assert iod.std() / iod.mean() > 0.05
    # Yaw proxy: the nose tip's offset from the eye midpoint along the eye line, in inter-ocular units.
    eye_axis = (pts[:, 45] - pts[:, 36]) / iod[:, None]
    yaw_proxy = np.einsum("nk,nk->n", pts[:, 30] - 0.5 * (pts[:, 36] + pts[:, 45]), eye_axis) / iod
    assert yaw_proxy.std() > 0.08 and yaw_proxy.min() < -0.1 and yaw_proxy.max() > 0.1
    roll = np.degrees(np.arctan2(eye_axis[:, 1], eye_axis[:, 0]))
    assert roll.std() > 5
    # Whole images differ a lot (colours, backgrounds), not just the points.
    imgs = np.stack([np.asarray(i, dtype=np.float64) for i, _ in clean_faces[:10]])
    assert np.abs(imgs - imgs.mean(0)).mean() > 20


def test_write_folder_round_trip(tmp_path) -> None:
    cfg = SyntheticFaceConfig(image_size=64)
    paths = write_folder(tmp_path / "synth", 3, seed=2, cfg=cfg)
    assert [p.name for p in paths] == ["synth_00000.png", "synth_00001.png", "synth_00002.png"]
    expected = generate(3, seed=2, cfg=cfg)
    for path, (img, pts) in zip(paths, expected, strict=True):
        with Image.open(path) as saved:
            assert np.array_equal(np.asarray(saved.convert("RGB")), np.asarray(img))
        np.testing.assert_allclose(read_pts(path.with_suffix(".pts"), 68), pts, atol=1e-3)
    report = scan_pts_folder(tmp_path / "synth", strict=True)
    assert [s.image for s in report.samples] == paths and report.problems == []
