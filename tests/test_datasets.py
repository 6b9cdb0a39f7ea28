"""Dataset readers on generated fixtures in the exact native layouts (empty image files: loaders never decode)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sht.data.datasets import (
    LOADERS,
    VW300_CATEGORY1,
    VW300_CATEGORY2,
    VW300_CATEGORY3,
    VW300_TRAIN,
    WFLW_ATTRIBUTES,
    check_dataset,
    load_300vw,
    load_300w,
    load_aflw,
    load_celeba,
    load_dataset,
    load_helen_sr,
    load_wflw,
    parse_wflw_line,
)
from sht.data.formats import (
    AFLW19,
    IBUG68,
    SCHEMES,
    WFLW98,
    DataError,
    format_pts,
    mirror_points,
    parse_pts,
    read_pts,
    scan_pts_folder,
    scheme_for,
)
from sht.metrics import nme

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def official_counts(ds) -> dict[str, int]:
    """Counts of the dataset's own splits (without the derived ``fit``, and ``val`` where it is carved)."""
    derived = ("fit",) if ds.name == "celeba" else ("fit", "val")
    return {k: v for k, v in ds.counts().items() if k not in derived}


def touch(path: Path, image: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if image:
        Image.new("RGB", (16, 16), (90, 60, 30)).save(path)
    else:
        path.write_bytes(b"")  # loaders only check existence
    return path


def face68(seed: int = 0) -> np.ndarray:
    """68 native (1-based) points with the outer eye corners 36/45 at (11, 21) and (51, 21), 40 px apart."""
    pts = np.random.default_rng(seed).uniform(5, 60, (68, 2)).round(3)
    pts[0] = (1, 1)
    pts[36] = (11, 21)
    pts[45] = (51, 21)
    return pts


def write_native_pts(path: Path, pts: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_pts(pts), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------------------
# Landmark schemes
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", [IBUG68, WFLW98, AFLW19])
def test_flips_are_involutions_and_mirror_back(scheme):
    flip = np.asarray(scheme.flip)
    assert sorted(flip.tolist()) == list(range(scheme.num_points))
    assert np.array_equal(flip[flip], np.arange(scheme.num_points))
    assert scheme.flip[scheme.outer_eyes[0]] == scheme.outer_eyes[1]
    assert sorted(scheme.flip[i] for i in scheme.left_eye) == sorted(scheme.right_eye)
    pts = np.random.default_rng(3).uniform(0, 40, (scheme.num_points, 2))
    assert np.allclose(mirror_points(mirror_points(pts, 40.0, scheme), 40.0, scheme), pts)
    assert SCHEMES[scheme.num_points] is scheme and scheme_for(scheme.num_points) is scheme


def test_wflw_and_aflw_layouts():
    f = WFLW98.flip
    assert WFLW98.outer_eyes == (60, 72)
    assert f[0] == 32 and f[16] == 16 and f[33] == 46 and f[38] == 50 and f[96] == 97
    assert [i for i in range(98) if f[i] == i] == [16, 51, 52, 53, 54, 57, 79, 85, 90, 94]  # the midline
    g = AFLW19.flip
    assert [i for i in range(19) if g[i] == i] == [13, 16, 18]  # nose tip, mouth centre, chin
    assert g[6] == 11 and g[0] == 5 and g[15] == 17


# ------------------------------------------------------------------------------------------------------------
# 300-W
# ------------------------------------------------------------------------------------------------------------

W300_FILES = {
    ("lfpw", "trainset"): ["image_0001.png", "image_0002.png"],
    ("lfpw", "testset"): ["image_0001.png"],
    ("helen", "trainset"): ["100032540_1.jpg", "10405146_1.jpg"],
    ("helen", "testset"): ["296814969_3.jpg"],
    ("afw",): ["1051618982_1.jpg"],
    ("ibug",): ["image_003_1.jpg", "image_004_1.jpg"],
}


def make_300w(root: Path) -> Path:
    for i, (parts, names) in enumerate(W300_FILES.items()):
        folder = root.joinpath(*parts)
        for j, name in enumerate(names):
            touch(folder / name, image=(i == 0 and j == 0))
            write_native_pts((folder / name).with_suffix(".pts"), face68(10 * i + j))
    return root


def test_300w_splits_conversion_and_nme(tmp_path):
    ds = load_300w(make_300w(tmp_path / "300W"))
    assert ds.name == "300w" and ds.scheme is IBUG68 and ds.norms == ("inter_ocular", "inter_pupil")
    assert official_counts(ds) == {"train": 5, "common": 2, "challenging": 2, "full": 4}
    assert ds.problems == []
    s = ds.splits["train"][0]
    assert s.image.name == "image_0001.png" and s.image.parent.parent.name == "lfpw"
    assert np.allclose(s.points[0], (0.5, 0.5))  # 1-based (1, 1) -> (0.5, 0.5)
    assert np.allclose(s.points, face68(0) - 0.5)
    assert [x.image.parent.name for x in ds.splits["full"]] == ["testset", "testset", "ibug", "ibug"]
    # inter-ocular NME by hand: outer corners (10.5, 20.5) and (50.5, 20.5) -> 40 px; every point off by 5 px
    pred = s.points + (3.0, 4.0)
    assert nme(pred, s.points, norm=ds.norms[0], scheme=ds.scheme)[0] == pytest.approx(5 / 40)
    assert np.allclose(load_300w(tmp_path / "300W", offset=0.0).splits["train"][0].points, face68(0))


def test_300w_folder_names_are_case_insensitive(tmp_path):
    root = make_300w(tmp_path / "w")
    (root / "ibug").rename(root / "IBUG")
    (root / "lfpw").rename(root / "LFPW")
    assert load_300w(root).counts()["challenging"] == 2


def test_300w_problems(tmp_path):
    root = make_300w(tmp_path / "w")
    write_native_pts(root / "afw" / "bad.pts", np.zeros((2, 2)))
    touch(root / "afw" / "bad.jpg")
    write_native_pts(root / "afw" / "lonely.pts", face68())
    (root / "ibug" / "image_003_1.pts").write_text("version: 1\nn_points: 68\n{\n1 x\n}\n")
    ds = load_300w(root)
    assert official_counts(ds) == {"train": 5, "common": 2, "challenging": 1, "full": 3}
    assert len(ds.problems) == 3
    assert any("bad.pts: expected 68 points, found 2" in p for p in ds.problems)
    assert any("lonely.pts: no image beside it" in p for p in ds.problems)
    assert any("image_003_1.pts" in p and "non-numeric" in p for p in ds.problems)
    with pytest.raises(DataError, match="expected 68 points, found 2"):
        load_300w(root, strict=True)


def test_300w_missing_folders(tmp_path):
    root = make_300w(tmp_path / "w")
    for p in (root / "afw").iterdir():
        p.unlink()
    (root / "afw").rmdir()
    ds = load_300w(root)
    assert ds.counts()["train"] == 4
    assert len(ds.problems) == 1 and ds.problems[0].startswith(f"{root / 'afw'}: 300-W folder missing (expected lfpw/")
    with pytest.raises(DataError, match="afw: 300-W folder missing"):
        load_300w(root, strict=True)
    with pytest.raises(DataError, match="300-W dataset root not found"):
        load_300w(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable 300w samples; problems: .*lfpw.*300-W folder missing"):
        load_300w(tmp_path / "empty")


# ------------------------------------------------------------------------------------------------------------
# WFLW
# ------------------------------------------------------------------------------------------------------------


def wflw_points(seed: int) -> np.ndarray:
    pts = np.random.default_rng(seed).uniform(90, 300, (98, 2)).round(6)
    pts[60] = (100.0, 200.0)
    pts[72] = (180.0, 200.0)  # outer eye corners 80 px apart
    return pts


def wflw_line(pts: np.ndarray, box=(80, 90, 320, 330), flags=(0, 0, 0, 0, 0, 0), path="0--Parade/0_Parade_1.jpg"):
    coords = " ".join(f"{v:.6f}" for v in pts.reshape(-1))
    return f"{coords} {' '.join(str(b) for b in box)} {' '.join(str(f) for f in flags)} {path}"


WFLW_TEST_FLAGS = [(1, 0, 0, 0, 0, 1), (0, 1, 1, 0, 0, 0), (1, 0, 0, 1, 1, 0), (0, 0, 0, 0, 0, 0)]


def make_wflw(root: Path, extra_test: list[str] | None = None) -> Path:
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    train, test = [], []
    for i in range(3):
        rel = f"51--Dresses/51_Dresses_wearingdress_51_{i}.jpg"
        touch(root / "WFLW_images" / rel, image=(i == 0))
        train.append(wflw_line(wflw_points(i), path=rel))
    for i, flags in enumerate(WFLW_TEST_FLAGS):
        rel = f"0--Parade/0_Parade_marchingband_1_{i}.jpg"
        touch(root / "WFLW_images" / rel)
        test.append(wflw_line(wflw_points(10 + i), box=(81, 91, 301, 311), flags=flags, path=rel))
    (lists / "list_98pt_rect_attr_train.txt").write_text("\n".join(train) + "\n")
    (lists / "list_98pt_rect_attr_test.txt").write_text("\n".join(test + (extra_test or [])) + "\n")
    return root


def test_wflw_splits_attributes_and_nme(tmp_path):
    ds = load_wflw(make_wflw(tmp_path / "WFLW"))
    assert ds.scheme is WFLW98 and ds.norms == ("inter_ocular",) and ds.problems == []
    assert official_counts(ds) == {
        "train": 3,
        "test": 4,
        "pose": 2,
        "expression": 1,
        "illumination": 1,
        "makeup": 1,
        "occlusion": 1,
        "blur": 1,
    }
    t = ds.splits["test"][0]
    assert t.attributes == dict(zip(WFLW_ATTRIBUTES, WFLW_TEST_FLAGS[0], strict=True))
    assert np.allclose(t.box, (81, 91, 301, 311))
    assert np.allclose(t.points, wflw_points(10))  # offset 0 by default
    assert t.image == tmp_path / "WFLW" / "WFLW_images" / "0--Parade" / "0_Parade_marchingband_1_0.jpg"
    assert [s.image.name[-5] for s in ds.splits["pose"]] == ["0", "2"]
    # inter-ocular NME by hand: points 60/72 are 80 px apart; every point off by 10 px
    pred = t.points + (6.0, 8.0)
    assert nme(pred, t.points, norm="inter_ocular", scheme=ds.scheme)[0] == pytest.approx(10 / 80)
    shifted = load_wflw(tmp_path / "WFLW", offset=0.5).splits["test"][0]
    assert np.allclose(shifted.points, t.points + 0.5) and np.allclose(shifted.box, t.box + 0.5)


def test_wflw_bad_lines_are_reported(tmp_path):
    good = wflw_points(0)
    nan_pts = good.copy()
    nan_pts[5, 0] = np.nan
    bad = [
        wflw_line(good)[: -len("0--Parade/0_Parade_1.jpg") - 1],  # path missing
        wflw_line(good).replace("100.000000", "abc", 1),
        wflw_line(nan_pts),
        wflw_line(good, flags=(0, 2, 0, 0, 0, 0)),
        wflw_line(good, box=(300, 90, 80, 330)),
        wflw_line(good, path="0--Parade/missing.jpg"),
    ]
    root = make_wflw(tmp_path / "WFLW", extra_test=bad)
    ds = load_wflw(root)
    assert ds.counts()["test"] == 4
    assert len(ds.problems) == 6
    test_file = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_test.txt"
    expected = [
        f"{test_file}:5: expected 207 fields (196 coordinates, 4 box values, 6 attribute flags, image path), found 206",
        f"{test_file}:6: non-numeric coordinate or box value 'abc'",
        f"{test_file}:7: coordinates or box contain NaN or inf",
        f"{test_file}:8: attribute flag 'expression' must be 0 or 1, got '2'",
        f"{test_file}:9: box [300.0, 90.0, 80.0, 330.0] is not x_min y_min x_max y_max",
        f"{test_file}:10: image {root / 'WFLW_images' / '0--Parade' / 'missing.jpg'} not found",
    ]
    assert ds.problems == expected
    with pytest.raises(DataError, match="expected 207 fields"):
        load_wflw(root, strict=True)


def test_wflw_missing_files(tmp_path):
    root = make_wflw(tmp_path / "WFLW")
    (root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_train.txt").unlink()
    ds = load_wflw(root)
    assert ds.counts()["train"] == 0 and ds.counts()["test"] == 4
    assert ds.problems[0].endswith("list_98pt_rect_attr_train.txt: WFLW annotation file missing")
    with pytest.raises(DataError, match="list_98pt_rect_attr_train.txt: WFLW annotation file missing"):
        load_wflw(root, strict=True)
    (root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_test.txt").unlink()
    with pytest.raises(DataError, match="no usable wflw samples; problems: .*train.txt.*test.txt"):
        load_wflw(root)
    (tmp_path / "imgless").mkdir()
    with pytest.raises(DataError, match="WFLW_images: WFLW image folder not found"):
        load_wflw(tmp_path / "imgless")
    with pytest.raises(DataError, match="WFLW dataset root not found"):
        load_wflw(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------------
# AFLW-19
# ------------------------------------------------------------------------------------------------------------

AFLW_RA = [4, 1, 6, 2, 5, 3]  # 1-based: train = faces 3, 0, 5; test = faces 1, 4, 2


def aflw_mat_fields(n: int = 6) -> dict:
    rng = np.random.default_rng(7)
    xs = rng.uniform(20, 100, (n, 19)).round(2)
    ys = rng.uniform(30, 110, (n, 19)).round(2)
    data = np.concatenate([xs, ys], axis=1)  # x1..x19 then y1..y19
    mask = np.ones((n, 19))
    mask[0, 3] = 0
    mask[2, 10:] = 0  # test face 2: not frontal
    mask[5, :2] = 0
    bbox = np.tile([11.0, 111.0, 21.0, 121.0], (n, 1))  # left, right, top, bottom (1-based)
    names = np.empty((n, 1), dtype=object)
    for i in range(n):
        names[i, 0] = f"{i % 3}/image{i:05d}.jpg"
    return {
        "bbox": bbox,
        "data": data,
        "mask_new": mask,
        "ra": np.asarray([AFLW_RA], dtype=np.float64),
        "nameList": names,
    }


def make_aflw(root: Path, fields: dict | None = None) -> Path:
    fields = aflw_mat_fields() if fields is None else fields
    root.mkdir(parents=True)
    scipy.io.savemat(str(root / "AFLWinfo_release.mat"), fields)
    for e in fields["nameList"].reshape(-1):
        touch(root / "flickr" / e)
    return root


def test_aflw_protocol_visibility_box_and_nme(tmp_path):
    fields = aflw_mat_fields()
    ds = load_aflw(make_aflw(tmp_path / "AFLW", fields), train_count=3)
    assert ds.scheme is AFLW19 and ds.norms == ("box", "diagonal") and ds.problems == []
    assert official_counts(ds) == {"train": 3, "full": 3, "frontal": 2}
    assert [s.attributes["face"] for s in ds.splits["train"]] == [3, 0, 5]
    assert [s.attributes["face"] for s in ds.splits["full"]] == [1, 4, 2]
    assert [s.attributes["face"] for s in ds.splits["frontal"]] == [1, 4]  # all 19 points visible
    s = ds.splits["full"][2]
    assert s.image == tmp_path / "AFLW" / "flickr" / "2" / "image00002.jpg"
    assert s.visible.dtype == bool and s.visible.sum() == 10
    assert np.allclose(s.points[:, 0], fields["data"][2, :19] - 0.5)
    assert np.allclose(s.points[:, 1], fields["data"][2, 19:] - 0.5)
    assert np.allclose(s.box, (10.5, 20.5, 110.5, 120.5))  # left, right, top, bottom -> x0, y0, x1, y1
    # box NME by hand: sqrt(100 * 100) = 100; visible points off by 5 px, hidden ones by 100 px (ignored)
    pred = s.points.copy()
    pred[s.visible] += (3.0, 4.0)
    pred[~s.visible] += 100.0
    got = nme(pred, s.points, norm="box", scheme=ds.scheme, boxes=s.box, visible=s.visible)
    assert got[0] == pytest.approx(5 / 100)
    got = nme(pred, s.points, norm="diagonal", scheme=ds.scheme, boxes=s.box, visible=s.visible)
    assert got[0] == pytest.approx(5 / (100 * np.sqrt(2)))


def test_aflw_images_under_data_flickr(tmp_path):
    root = make_aflw(tmp_path / "AFLW")
    (root / "data").mkdir()
    (root / "flickr").rename(root / "data" / "flickr")
    ds = load_aflw(root, train_count=3)
    assert ds.splits["train"][0].image == root / "data" / "flickr" / "0" / "image00003.jpg"


def test_aflw_problems(tmp_path):
    fields = aflw_mat_fields()
    fields["data"][1, 4] = np.nan
    fields["bbox"][4] = [50, 40, 21, 121]
    root = make_aflw(tmp_path / "AFLW", fields)
    (root / "flickr" / "2" / "image00005.jpg").unlink()
    ds = load_aflw(root, train_count=3)
    mat = root / "AFLWinfo_release.mat"
    assert ds.problems == [
        f"{mat} face 1: coordinates contain NaN or inf",
        f"{mat} face 4: bad bbox [50.0, 40.0, 21.0, 121.0] (expected left < right, top < bottom)",
        f"{mat} face 5: image {root / 'flickr' / '2' / 'image00005.jpg'} not found",
    ]
    assert official_counts(ds) == {"train": 2, "full": 1, "frontal": 0}
    with pytest.raises(DataError, match="face 1: coordinates contain NaN"):
        load_aflw(root, strict=True, train_count=3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.pop("mask_new"), "field 'mask_new' missing"),
        (lambda f: f.update(data=f["data"][:, :36]), r"field 'data' has shape \(6, 36\), expected 6 x 38"),
        (lambda f: f.update(ra=np.asarray([[1, 1, 2, 3, 4, 5]])), "'ra' is not a permutation of 1..6"),
        (lambda f: f.update(ra=np.asarray([[0, 1, 2, 3, 4, 5]])), "'ra' is not a permutation"),
        (lambda f: f.pop("nameList"), "field 'nameList' missing"),
        (lambda f: f.update(bbox=f["bbox"][:, :3]), r"field 'bbox' has shape \(6, 3\)"),
    ],
)
def test_aflw_malformed_mat(tmp_path, change, message):
    fields = aflw_mat_fields()
    change(fields)
    root = tmp_path / "AFLW"
    root.mkdir()
    scipy.io.savemat(str(root / "AFLWinfo_release.mat"), fields)
    with pytest.raises(DataError, match=message):
        load_aflw(root, train_count=3)


def test_aflw_missing_or_unreadable_mat(tmp_path):
    root = tmp_path / "AFLW"
    root.mkdir()
    with pytest.raises(DataError, match="AFLWinfo_release.mat: AFLW-19 annotation file not found"):
        load_aflw(root)
    (root / "AFLWinfo_release.mat").write_bytes(b"this is not a matlab file" * 20)
    with pytest.raises(DataError, match="AFLWinfo_release.mat: cannot read the .mat file"):
        load_aflw(root)
    make_aflw(tmp_path / "small")
    with pytest.raises(DataError, match="6 faces, too few for train_count=20000"):
        load_aflw(tmp_path / "small")


# ------------------------------------------------------------------------------------------------------------
# CelebA
# ------------------------------------------------------------------------------------------------------------


def celeba_points(seed: int) -> np.ndarray:
    pts = np.random.default_rng(seed).uniform(20, 100, (68, 2)).round(3)
    pts[0, 0], pts[16, 0] = 10.0, 110.0  # face width 100
    return pts


def make_celeba(root: Path, form: str = "csv") -> Path:
    parts = [0, 0, 0, 1, 2, 2]
    lines = []
    for i, p in enumerate(parts, 1):
        touch(root / "img_align_celeba" / f"{i:06d}.jpg", image=(i == 1))
        lines.append(f"{i:06d}.jpg {p}")
    (root / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    labeled = [1, 2, 4, 5, 6]  # 000003.jpg has no landmarks
    if form == "csv":
        rows = ["image," + ",".join(f"x{k},y{k}" for k in range(68))]
        rows += [f"{i:06d}.jpg," + ",".join(f"{v:.3f}" for v in celeba_points(i).reshape(-1)) for i in labeled]
        (root / "landmarks68.csv").write_text("\n".join(rows) + "\n")
    elif form == "txt":
        rows = [f"{i:06d}.jpg " + " ".join(f"{v:.3f}" for v in celeba_points(i).reshape(-1)) for i in labeled]
        (root / "landmarks68.txt").write_text("\n".join(rows) + "\n")
    elif form != "none":
        for i in labeled:
            write_native_pts(root / form / f"{i:06d}.pts", celeba_points(i))
    return root


@pytest.mark.parametrize("form", ["csv", "txt", "landmarks68", "my_points"])
def test_celeba_partition_landmarks_and_nme(tmp_path, form):
    root = make_celeba(tmp_path / "CelebA", form)
    ds = load_celeba(root, landmarks=(root / form) if form == "my_points" else None)
    assert ds.scheme is IBUG68 and ds.norms == ("face_width",)
    assert official_counts(ds) == {"train": 2, "val": 1, "test": 2}
    assert len(ds.problems) == 1 and "1 of 6 images in list_eval_partition.txt have no 68-point" in ds.problems[0]
    assert "000003.jpg" in ds.problems[0]
    s = ds.splits["test"][1]
    assert s.image == root / "img_align_celeba" / "000006.jpg"
    assert np.allclose(s.points, celeba_points(6), atol=1e-3)
    # face-width NME by hand: GT x spans 10..110 -> 100 px; every point off by 5 px
    assert nme(s.points + (5.0, 0.0), s.points, norm="face_width")[0] == pytest.approx(5 / 100, rel=1e-6)


def test_celeba_google_drive_layout_and_csv_partition(tmp_path):
    root = make_celeba(tmp_path / "CelebA")
    (root / "Img").mkdir()
    (root / "img_align_celeba").rename(root / "Img" / "img_align_celeba")
    (root / "Eval").mkdir()
    text = (root / "list_eval_partition.txt").read_text().replace(" ", ",")
    (root / "list_eval_partition.txt").unlink()
    (root / "Eval" / "list_eval_partition.txt").write_text("image_id,partition\n" + text)
    assert official_counts(load_celeba(root)) == {"train": 2, "val": 1, "test": 2}


def test_celeba_problems(tmp_path):
    root = make_celeba(tmp_path / "CelebA")
    with open(root / "landmarks68.csv", "a") as fh:
        fh.write("000003.jpg,1,2,3\n")
        fh.write("000003.jpg," + ",".join(["nan"] * 136) + "\n")
        fh.write("000003.jpg," + ",".join(["x"] * 136) + "\n")
        fh.write("999999.jpg," + ",".join(["1"] * 136) + "\n")
    with open(root / "list_eval_partition.txt", "a") as fh:
        fh.write("000007.jpg 5\n")
    (root / "img_align_celeba" / "000002.jpg").unlink()
    ds = load_celeba(root)
    csv, part = root / "landmarks68.csv", root / "list_eval_partition.txt"
    assert ds.problems == [
        f"{csv}:7: expected 137 fields (file name and 68 x y pairs), found 4",
        f"{csv}:8: coordinates contain NaN or inf",
        f"{csv}:9: non-numeric coordinate",
        f"{part}:7: expected '<image> <0|1|2>', got '000007.jpg 5'",
        f"{csv}: landmarks for 999999 but the image is not in list_eval_partition.txt",
        f"{root / 'img_align_celeba' / '000002.jpg'}: image not found",
        f"{csv}: 1 of 6 images in list_eval_partition.txt have no 68-point landmarks and are left out "
        "(first: 000003.jpg)",
    ]
    assert official_counts(ds) == {"train": 1, "val": 1, "test": 2}
    with pytest.raises(DataError, match="expected 137 fields"):
        load_celeba(root, strict=True)


def test_celeba_missing_files(tmp_path):
    root = make_celeba(tmp_path / "CelebA", form="none")
    with pytest.raises(DataError, match="no 68-point CelebA landmarks: expected a folder landmarks68/"):
        load_celeba(root)
    with pytest.raises(DataError, match="elsewhere: CelebA landmark file or folder not found"):
        load_celeba(root, landmarks=tmp_path / "elsewhere")
    (root / "list_eval_partition.txt").unlink()
    with pytest.raises(DataError, match="list_eval_partition.txt: CelebA partition file not found"):
        load_celeba(root)
    with pytest.raises(DataError, match="CelebA dataset root not found"):
        load_celeba(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------------------------
# Helen (hallucination split)
# ------------------------------------------------------------------------------------------------------------

HELEN_TRAIN = ["100032540_1", "1629243_1", "2908549_1", "10405146_1"]
HELEN_TEST = ["296814969_3", "30427236_1"]


def make_helen(root: Path, flat: bool = False) -> Path:
    for names, sub in ((HELEN_TRAIN, "trainset"), (HELEN_TEST, "testset")):
        folder = root if flat else root / "helen" / sub
        for i, stem in enumerate(names):
            touch(folder / f"{stem}.jpg")
            write_native_pts(folder / f"{stem}.pts", face68(i))
    return root


@pytest.mark.parametrize("flat", [False, True])
def test_helen_last_files_by_name_are_test(tmp_path, flat):
    root = make_helen(tmp_path / "Helen", flat=flat)
    ds = load_helen_sr(root, test_count=2)
    assert ds.scheme is IBUG68 and ds.norms == ("face_width",) and ds.problems == []
    order = sorted(HELEN_TRAIN + HELEN_TEST)
    assert [s.name for s in ds.splits["train"]] == order[:-2]
    assert [s.name for s in ds.splits["test"]] == order[-2:] == ["296814969_3", "30427236_1"]
    s = ds.splits["test"][0]
    assert np.allclose(s.points, face68(0) - 0.5)
    w = np.ptp(s.points[:, 0])
    assert nme(s.points + (0.0, 2.0), s.points, norm="face_width")[0] == pytest.approx(2 / w)


def test_helen_problems(tmp_path):
    root = make_helen(tmp_path / "Helen")
    with pytest.raises(DataError, match="only 6 usable Helen images, need more than test_count=50"):
        load_helen_sr(root)
    touch(root / "helen" / "testset" / "100032540_1.jpg")
    write_native_pts(root / "helen" / "testset" / "100032540_1.pts", face68())
    ds = load_helen_sr(root, test_count=2)
    assert len(ds.problems) == 1 and "same file name as" in ds.problems[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no usable helen samples; problems: .*empty: no .pts files found"):
        load_helen_sr(tmp_path / "empty")


# ------------------------------------------------------------------------------------------------------------
# 300VW
# ------------------------------------------------------------------------------------------------------------


def make_300vw(root: Path) -> Path:
    base = root / "300VW_Dataset_2015_12_14"
    for vid, ext, n in (("001", ".png", 3), ("114", ".jpg", 2), ("203", ".png", 1), ("410", ".png", 2)):
        d = base / vid
        touch(d / "vid.avi")
        for f in range(1, n + 1):
            write_native_pts(d / "annot" / f"{f:06d}.pts", face68(int(vid) + f))
            touch(d / "frames" / f"{f:06d}{ext}", image=(vid == "001" and f == 1))
    d = base / "533"  # category 3, frames not extracted
    touch(d / "vid.avi")
    write_native_pts(d / "annot" / "000001.pts", face68())
    return root


def test_official_300vw_lists():
    lists = [VW300_TRAIN, VW300_CATEGORY1, VW300_CATEGORY2, VW300_CATEGORY3]
    assert [len(x) for x in lists] == [50, 31, 19, 14]
    assert len(set().union(*map(set, lists))) == 114


def test_300vw_splits_frames_and_nme(tmp_path):
    root = make_300vw(tmp_path / "300VW")
    ds = load_300vw(root)
    assert ds.scheme is IBUG68 and ds.norms == ("inter_ocular",)
    assert official_counts(ds) == {"train": 3, "category1": 2, "category2": 1, "category3": 2}
    vid = root / "300VW_Dataset_2015_12_14" / "533"
    assert ds.problems == [
        f"{vid}: frames not extracted (only vid.avi); extract them with: mkdir -p {vid / 'frames'} && "
        f"ffmpeg -i {vid / 'vid.avi'} -start_number 1 {vid / 'frames' / '%06d.png'}"
    ]
    s = ds.splits["category1"][1]
    assert s.attributes == {"video": 114, "frame": 2}
    assert s.image == root / "300VW_Dataset_2015_12_14" / "114" / "frames" / "000002.jpg"
    assert np.allclose(s.points, face68(116) - 0.5)
    assert [x.attributes["frame"] for x in ds.splits["train"]] == [1, 2, 3]
    pred = s.points + (3.0, 4.0)
    assert nme(pred, s.points, norm="inter_ocular", scheme=ds.scheme)[0] == pytest.approx(5 / 40)
    # the dataset folder itself can be given as the root too
    assert load_300vw(root / "300VW_Dataset_2015_12_14").counts() == ds.counts()


def test_300vw_problems(tmp_path):
    root = make_300vw(tmp_path / "300VW")
    base = root / "300VW_Dataset_2015_12_14"
    write_native_pts(base / "999" / "annot" / "000001.pts", face68())
    (base / "001" / "frames" / "000002.png").unlink()
    write_native_pts(base / "203" / "annot" / "000001.pts", np.ones((5, 2)))
    (base / "410" / "frames").rename(base / "410" / "imgs")  # mmpose's folder name is accepted
    (base / "410" / "vid.avi").unlink()
    ds = load_300vw(root)
    assert official_counts(ds) == {"train": 2, "category1": 2, "category2": 0, "category3": 2}
    assert ds.problems[0] == (
        f"{base / '001' / 'annot' / '000002.pts'}: frame image {base / '001' / 'frames' / '000002.png'} "
        "(or .jpg) not found"
    )
    assert ds.problems[1] == f"{base / '203' / 'annot' / '000001.pts'}: expected 68 points, found 5"
    assert "533: frames not extracted" in ds.problems[2]
    assert ds.problems[3] == (
        f"{base / '999'}: video 999 is in neither the official 300VW training list nor a test category"
    )
    with pytest.raises(DataError, match="000002.png \\(or .jpg\\) not found"):
        load_300vw(root, strict=True)
    (tmp_path / "novids").mkdir()
    with pytest.raises(DataError, match="no 300VW video folders"):
        load_300vw(tmp_path / "novids")


# ------------------------------------------------------------------------------------------------------------
# Dispatch and report
# ------------------------------------------------------------------------------------------------------------


def test_load_dataset_dispatch_and_report(tmp_path):
    root = make_wflw(tmp_path / "WFLW", extra_test=["1 2 3"])
    assert set(LOADERS) == {"300w", "wflw", "aflw", "celeba", "helen", "300vw"}
    assert load_dataset("WFLW", root).counts()["test"] == 4
    assert load_dataset("aflw", make_aflw(tmp_path / "AFLW"), train_count=3).counts()["full"] == 3
    with pytest.raises(DataError, match="unknown dataset 'cofw'; known: 300w, wflw, aflw, celeba, helen, 300vw"):
        load_dataset("cofw", root)
    report = check_dataset("wflw", root)
    lines = report.splitlines()
    assert lines[0] == f"wflw at {root}: 98-point scheme wflw98, NME normalisers inter_ocular"
    assert "  train         3" in lines and "  occlusion     1" in lines
    assert lines[-2] == "1 problem(s), skipped:"
    assert lines[-1].endswith(
        "list_98pt_rect_attr_test.txt:5: expected 207 fields (196 coordinates, 4 box values, "
        "6 attribute flags, image path), found 3"
    )
    assert check_dataset("300w", make_300w(tmp_path / "w")).endswith("no problems found")


# ------------------------------------------------------------------------------------------------------------
# Parsers never raise anything but DataError
# ------------------------------------------------------------------------------------------------------------

_VALID_WFLW = wflw_line(wflw_points(0)).split()
_NASTY = st.sampled_from(["nan", "inf", "-inf", "1e999", "", "0x10", "1_0", "٣", "2", "-1", "1.5", "{", "}", "é"])


@st.composite
def near_valid_wflw(draw):
    tokens = list(_VALID_WFLW)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(tokens) - 1))
        action = draw(st.sampled_from(["replace", "drop", "insert"]))
        tok = draw(st.one_of(_NASTY, st.text(max_size=8)))
        if action == "replace":
            tokens[i] = tok
        elif action == "drop":
            del tokens[i]
        else:
            tokens.insert(i, tok)
    return " ".join(tokens)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), near_valid_wflw(), st.binary(max_size=300).map(lambda b: b.decode("latin-1"))))
def test_wflw_line_parser_only_raises_data_error(line):
    try:
        pts, box, attrs, path = parse_wflw_line(line, "f.txt:1")
    except DataError:
        return
    assert pts.shape == (98, 2) and np.all(np.isfinite(pts)) and set(attrs.values()) <= {0, 1} and path


_VALID_PTS = format_pts(face68()).splitlines()


@st.composite
def near_valid_pts(draw):
    lines = list(_VALID_PTS)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        tok = draw(st.one_of(_NASTY, st.text(max_size=12), st.just("n_points: x"), st.just("1 2 3")))
        action = draw(st.sampled_from(["replace", "drop", "insert"]))
        if action == "replace":
            lines[i] = tok
        elif action == "drop":
            del lines[i]
        else:
            lines.insert(i, tok)
    return "\n".join(lines)


@settings(max_examples=150, deadline=None)
@given(st.one_of(st.text(max_size=300), near_valid_pts()))
def test_pts_parser_only_raises_data_error(text):
    try:
        pts = parse_pts(text, "f.pts", 68)
    except DataError:
        return
    assert pts.shape == (68, 2) and np.all(np.isfinite(pts))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300), near_valid_pts().map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_pts_reader_on_random_bytes_only_raises_data_error(tmp_path, data):
    p = tmp_path / "x.pts"
    p.write_bytes(data)
    try:
        read_pts(p, 68)
    except DataError:
        pass


# ------------------------------------------------------------------------------------------------------------
# Real data (developers' machines only)
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_DATA / "300w" / "helen" / "testset").is_dir(),
    reason=f"shared real data not available: {SHARED_DATA / '300w' / 'helen' / 'testset'} is absent",
)
def test_shared_helen_testset_agrees_with_folder_scan():
    folder = SHARED_DATA / "300w" / "helen" / "testset"
    ds = load_helen_sr(folder, offset=0.0)  # the shared copies are already converted
    scan = scan_pts_folder(folder)
    loaded = {s.image: s.points for split in ds.splits.values() for s in split}
    scanned = {s.image: s.points for s in scan.samples}
    assert ds.counts()["test"] == 50 and len(loaded) == len(scanned) == len(scan.samples)
    assert loaded.keys() == scanned.keys()
    for img, pts in scanned.items():
        assert np.array_equal(loaded[img], pts)
    native = load_helen_sr(folder)  # the default offset treats them as native 1-based files
    first = native.splits["train"][0]
    assert np.allclose(first.points, scanned[first.image] - 0.5)


def _faces(names: list[str], folder: str = "trainset") -> list:
    from sht.data.formats import LabeledImage

    return [LabeledImage(Path(f"/d/{folder}/{n}.jpg"), np.zeros((68, 2))) for n in names]


def test_validation_is_held_out_by_identity_and_fixed():
    from sht.data.datasets import holdout, photo_key

    names = [f"{1000 + p}_{f}" for p in range(60) for f in (1, 2)] + [f"image_{i:04d}" for i in range(40)]
    samples = _faces(names)
    held = holdout(samples, photo_key)
    groups = {photo_key(s) for s in samples}
    held_groups = {photo_key(samples[i]) for i in held}
    assert len(held_groups) == round(0.05 * len(groups)) == 5
    # every face of a held-out photo is held out, none of the others
    assert held == {i for i, s in enumerate(samples) if photo_key(s) in held_groups}
    # the same faces whatever the order of the files
    rev = samples[::-1]
    assert {str(rev[i].image) for i in holdout(rev, photo_key)} == {str(samples[i].image) for i in held}
    assert photo_key(samples[0]) == "trainset/1000" and photo_key(samples[-1]) == "trainset/image_0039"


def test_every_dataset_has_fit_and_val_from_train(tmp_path):
    from sht.data.datasets import load_300w

    ds = load_300w(make_300w(tmp_path / "300W"))
    fit, val, train = ds.splits["fit"], ds.splits["val"], ds.splits["train"]
    assert val and fit and len(fit) + len(val) == len(train)
    assert {s.image for s in fit}.isdisjoint({s.image for s in val})
    assert {s.image for s in fit} | {s.image for s in val} == {s.image for s in train}
    assert not {s.image for s in val} & {s.image for s in ds.splits["common"] + ds.splits["full"]}
    report = check_dataset("300w", tmp_path / "300W")
    assert "fit" in report and "held out by identity" in report
