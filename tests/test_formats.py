from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sht.data.formats import (
    IBUG68,
    DataError,
    format_pts,
    load_image,
    mirror_points,
    parse_pts,
    read_pts,
    scan_pts_folder,
    write_pts,
)


def test_pts_round_trip(tmp_path):
    pts = np.random.default_rng(0).uniform(0, 100, (68, 2))
    write_pts(tmp_path / "a.pts", pts)
    back = read_pts(tmp_path / "a.pts", 68)
    assert np.allclose(back, pts, atol=5e-4)
    assert "n_points:  68" in format_pts(pts)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", "n_points says 3 but 2 points follow"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 x\n}\n", "non-numeric"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 nan\n}\n", "NaN or inf"),
        ("version: 1\nn_points: 2\n{\n1 2\n3 4\n", "no closing"),
        ("hello\n", "not a .pts file"),
        ("version: 1\nn_points: 2\n{\n1 2 3\n3 4\n}\n", "expected 'x y'"),
    ],
)
def test_bad_pts_are_refused_with_the_reason(text, message):
    with pytest.raises(DataError, match=message):
        parse_pts(text, "f.pts")


def test_wrong_point_count():
    with pytest.raises(DataError, match="expected 68 points, found 2"):
        parse_pts("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n", "f.pts", 68)


def test_mirror_is_an_involution_and_swaps_eyes():
    pts = np.random.default_rng(1).uniform(0, 50, (68, 2))
    m = mirror_points(pts, 50.0, IBUG68)
    assert np.allclose(mirror_points(m, 50.0, IBUG68), pts)
    assert np.allclose(m[36], [50 - pts[45, 0], pts[45, 1]])
    assert np.allclose(m[8], [50 - pts[8, 0], pts[8, 1]])  # chin stays the chin


def test_scan_folder_reports_and_skips_bad_samples(synth_folder, tmp_path):
    import shutil

    d = tmp_path / "mixed"
    shutil.copytree(synth_folder, d)
    (d / "orphan.pts").write_text(format_pts(np.ones((68, 2))))
    (d / "short.pts").write_text(format_pts(np.ones((5, 2))))
    Image.new("RGB", (8, 8)).save(d / "short.png")
    rep = scan_pts_folder(d)
    assert len(rep.samples) == 12
    assert len(rep.problems) == 2
    assert any("no image beside it" in p for p in rep.problems)
    assert any("expected 68 points, found 5" in p for p in rep.problems)
    with pytest.raises(DataError):
        scan_pts_folder(d, strict=True)


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(DataError, match="no .pts files"):
        scan_pts_folder(tmp_path)
    with pytest.raises(DataError, match="not a folder"):
        scan_pts_folder(tmp_path / "nope")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA"])
def test_load_image_converts_modes_to_rgb(tmp_path, mode):
    arr = (np.arange(16 * 16).reshape(16, 16) % 256).astype(np.uint8)
    base = Image.fromarray(arr).convert("RGB")
    if mode == "I;16":
        img = Image.fromarray(arr.astype(np.uint16) * 257)
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    img.save(path)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (16, 16)
    if mode in ("L", "I;16", "LA"):
        assert np.array_equal(np.asarray(out)[..., 0], arr)


def test_load_image_errors(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="cannot decode"):
        load_image(bad)
    good = tmp_path / "t.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(good)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match="trunc.jpg"):
        load_image(trunc)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(DataError, match="too small"):
        load_image(tiny)
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "none.png")
