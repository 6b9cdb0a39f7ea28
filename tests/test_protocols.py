"""Datasets in their native layouts train and evaluate through the same code with the right normaliser."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from PIL import Image
from test_datasets import wflw_line

from conftest import SHARED_DATA, TINY, needs_shared
from sht.cli import main
from sht.config import ConfigError
from sht.evaluation import default_norm


def _noise_image(path, size=200, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)


def _points(k, seed):
    rng = np.random.default_rng(seed)
    ang = np.linspace(0, 2 * np.pi, k, endpoint=False)
    return np.stack([100 + 50 * np.cos(ang), 100 + 60 * np.sin(ang)], 1) + rng.normal(0, 2, (k, 2))


@pytest.fixture(scope="module")
def wflw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("WFLW")
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True)
    for split, n, flags in (("train", 10, (0, 0, 0, 0, 0, 0)), ("test", 4, (1, 0, 0, 0, 0, 1))):
        lines = []
        for i in range(n):
            rel = f"0--Parade/{split}_{i}.jpg"
            _noise_image(root / "WFLW_images" / rel, seed=i)
            lines.append(wflw_line(_points(98, i).round(4), box=(40, 30, 160, 170), flags=flags, path=rel))
        (lists / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def aflw_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("AFLW")
    n = 12
    pts = np.stack([_points(19, i) for i in range(n)]) + 1.0  # 1-based Matlab coordinates
    mask = np.ones((n, 19))
    mask[10, :4] = 0  # a test face with hidden points: not frontal
    names = np.empty((n, 1), dtype=object)
    for i in range(n):
        names[i, 0] = f"0/image{i:05d}.jpg"
        _noise_image(root / "flickr" / names[i, 0], seed=i)
    scipy.io.savemat(
        str(root / "AFLWinfo_release.mat"),
        {
            "bbox": np.tile([41.0, 161.0, 31.0, 171.0], (n, 1)),
            "data": np.concatenate([pts[..., 0], pts[..., 1]], 1),
            "mask_new": mask,
            "ra": np.arange(1, n + 1, dtype=np.float64)[None],
            "nameList": names,
        },
    )
    return root


def test_wflw_trains_and_evaluates_with_inter_ocular_60_72(wflw_root, tmp_path, capsys):
    src = f"wflw:{wflw_root}:train"
    assert (
        main(
            [
                "train",
                "small",
                *TINY,
                "model.num_landmarks=98",
                f"data.train=[{src}]",
                "train.batch_size=4",
                "train.steps=3",
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.safetensors"
    assert default_norm(f"wflw:{wflw_root}:test") == "inter_ocular"
    assert (
        main(
            [
                "evaluate",
                str(ckpt),
                "--data",
                f"wflw:{wflw_root}:pose",
                "--lr-size",
                "16",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert doc["norm"] == "inter_ocular" and doc["n"] == 4


def test_aflw_uses_box_norm_and_only_visible_points(aflw_root, tmp_path):
    import torch

    from sht.data.dataset import load_source
    from sht.evaluation import _landmark_nme

    test = load_source(f"aflw:{aflw_root}:full;train_count=8", 32, 1.3, 1.0)
    assert len(test) == 4
    assert test.visible is not None and not bool(test.visible.all())
    assert test.boxes is not None and test.boxes.shape == (4, 4)
    assert default_norm(f"aflw:{aflw_root}:full;train_count=8") == "box"
    # hidden points do not count: moving them does not change the NME
    gt = test.canonical_points()
    pred, moved = gt + 1.0, gt + 1.0
    moved[~test.visible] += 50.0
    idx = torch.arange(len(test))
    assert np.allclose(_landmark_nme(pred, gt, "box", test, idx), _landmark_nme(moved, gt, "box", test, idx))
    # a model trained on the 19 points scores NME_box on the full and frontal sets
    src = f"aflw:{aflw_root}:train;train_count=8"
    args = ["train", "small", *TINY, "model.num_landmarks=19", f"data.train=['{src}']", "train.batch_size=4"]
    assert main([*args, "train.steps=2", "--out", str(tmp_path / "r")]) == 0
    ckpt = tmp_path / "r" / "checkpoints" / "last.safetensors"
    for split, n in (("full", 4), ("frontal", 3)):
        data = f"aflw:{aflw_root}:{split};train_count=8"
        assert main(["evaluate", str(ckpt), "--data", data, "--lr-size", "16", "--out", str(tmp_path / split)]) == 0
        doc = json.loads((tmp_path / split / "results.json").read_text())
        assert doc["norm"] == "box" and doc["n"] == n


def test_packaged_configs_load_by_name_and_never_validate_on_test_data():
    from sht.config import load_config, load_detector_config, packaged_configs

    names = packaged_configs()
    assert len(names) >= 10 and "300w/small" in names and all(names.values())
    for name in names:
        if name.startswith("detector/"):  # face-detector runs (sht train-detector): never on a test split
            det = load_detector_config(name)
            assert det.data.train and not any("test" in src for src in det.data.train), name
            with pytest.raises(ConfigError, match="sht train-detector"):
                load_config(name)
            continue
        cfg = load_config(name)
        assert cfg.data.train and cfg.sht.steps
        for src in cfg.data.val:
            assert src.rsplit(":", 1)[1] == "val", f"{name} validates on {src}"
        for src in cfg.data.train:
            assert src.rsplit(":", 1)[1] in ("fit", "train"), f"{name} trains on {src}"
            if src.startswith("celeba:"):
                continue
            assert src.rsplit(":", 1)[1] == "fit", f"{name} trains on the faces it validates on: {src}"
    assert load_config("300w/small.yaml").data.val == load_config("300w/small").data.val
    with pytest.raises(ConfigError, match="not found.*nor is it a preset"):
        load_config("300w/nothing")


def test_configs_cli_lists_them(capsys):
    assert main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "small" in out and "300w/small" in out and "wflw/sht-m" in out


def test_data_check_cli(wflw_root, capsys):
    assert main(["data", "check", str(wflw_root), "--format", "wflw"]) == 0
    out = capsys.readouterr().out
    assert "train" in out and "10" in out and "pose" in out


@needs_shared("data", "aaf128")
def test_data_label_on_real_unlabeled_faces(tmp_path):
    pytest.importorskip("dlib")
    from sht.data.formats import scan_pts_folder
    from sht.teacher import label_folder

    report = label_folder(SHARED_DATA / "aaf128", out=tmp_path, limit=40, progress=False)
    assert report.total == 40
    assert len(report.labeled) + len(report.not_found) + len(report.errors) + len(report.existing) == 40
    assert len(report.labeled) >= 30
    assert len(scan_pts_folder(tmp_path).samples) == len(report.labeled)


def test_dlib_peer_runs_the_protocol_on_generated_faces():
    pytest.importorskip("dlib")
    from sht.evaluation import evaluate_dlib, load_eval_faces

    faces = load_eval_faces(["synthetic:6"], 128)
    res, found = evaluate_dlib(faces, [16, 128])
    assert set(res) == {16, 128} and set(found) == {16, 128}
    for s in (16, 128):
        assert res[s].points.shape == (6, 68, 2) and res[s].nme.shape == (6,)
        assert np.isfinite(res[s].nme).all() and 0 <= found[s] <= 1
        # the points land on the face: inside the 128 px crop, around the true landmarks
        assert (res[s].points > -10).all() and (res[s].points < 138).all()


@needs_shared("data", "300w/helen/testset")
def test_dlib_peer_on_helen_test_is_near_the_anchors():
    """The guide's peer anchors (dlib NME_io 6.70 % at 16 px, 3.42 % full resolution) within a margin on 60 faces."""
    pytest.importorskip("dlib")
    from sht.evaluation import evaluate_dlib, load_eval_faces

    faces = load_eval_faces([str(SHARED_DATA / "300w/helen/testset")], 128, limit=60)
    res, found = evaluate_dlib(faces, [16, 128])
    lo, full = res[16].summary()["nme"], res[128].summary()["nme"]
    assert 5.0 < lo < 9.0 and 2.5 < full < 4.5 and full < lo
    assert found[128] > 0.9
