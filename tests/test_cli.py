from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from sht.cli import main
from sht.data.formats import read_pts
from sht.data.transforms import canonical_crop


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny DHLN trained for a few steps through the CLI."""
    out = tmp_path_factory.mktemp("run")
    rc = main(["train", "small", *TINY, "data.train=[synthetic:32:1]", "train.steps=6", "--out", str(out)])
    assert rc == 0
    return out / "checkpoints" / "last.safetensors"


def test_detect_contract(trained, synth_folder, tmp_path, capsys):
    # canonical crops of two generated faces at 16 and 24 px
    crops = []
    for i, size in enumerate((16, 24)):
        img = Image.open(synth_folder / f"synth_{i:05d}.png")
        pts = read_pts(synth_folder / f"synth_{i:05d}.pts")
        crop, _, _ = canonical_crop(img, pts, size)
        crop.save(tmp_path / f"crop{i}.png")
        crops.append(tmp_path / f"crop{i}.png")
    out = tmp_path / "out.json"
    rc = main(
        [
            "detect",
            *map(str, crops),
            "--weights",
            str(trained),
            "--out",
            str(out),
            "--save-faces",
            str(tmp_path / "faces"),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    res = doc["results"]
    assert [r["image"] for r in res] == [str(c) for c in crops]
    for r, size in zip(res, (16, 24), strict=True):
        lm = np.array(r["landmarks"])
        assert lm.shape == (68, 2) and (r["width"], r["height"]) == (size, size)
        assert np.all(np.isfinite(lm))
        face = Image.open(r["face"])
        assert face.size == (32, 32)  # the tiny model's face size
    assert sorted(p.name for p in (tmp_path / "faces").iterdir()) == ["crop0.png", "crop1.png"]


def test_detect_landmarks_scale_with_the_input(trained, tmp_path):
    """The same crop at 16 and 32 px gives landmarks in each image's own pixels (twice as large)."""
    from sht.infer import Predictor

    pred = Predictor.from_checkpoint(trained)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    a = pred.predict([img])[0].landmarks
    b = pred.predict([img.resize((32, 32), Image.NEAREST)])[0].landmarks
    assert a.shape == (68, 2)
    assert np.all((a >= -1) & (a <= 17))
    # nearest-neighbour x2 and bicubic resize differ slightly; the scale must be 2
    assert np.median(b / np.maximum(a, 1e-3)) == pytest.approx(2.0, rel=0.25)


def test_detect_reports_bad_inputs_and_keeps_the_good(trained, tmp_path, capsys):
    good = tmp_path / "good.png"
    Image.new("RGB", (16, 16), (90, 60, 50)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    out = tmp_path / "o.json"
    rc = main(["detect", str(good), str(bad), "--weights", str(trained), "--out", str(out)])
    assert rc == 1
    doc = json.loads(out.read_text())
    assert "landmarks" in doc["results"][1] or "landmarks" in doc["results"][0]
    assert any("error" in r and "cannot decode" in r["error"] for r in doc["results"])
    assert "skipped" in capsys.readouterr().err


def test_evaluate_writes_a_report(trained, synth_folder, tmp_path, capsys):
    rc = main(
        [
            "evaluate",
            str(trained),
            "--data",
            str(synth_folder),
            "--lr-size",
            "8",
            "--lr-size",
            "16",
            "--out",
            str(tmp_path / "ev"),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "| 8 |" in text and "| 16 |" in text
    doc = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert doc["n"] == 12 and set(doc["results"]) == {"8", "16"}
    assert (tmp_path / "ev" / "ced.png").exists() and (tmp_path / "ev" / "faces_16.png").exists()


def test_clear_errors(tmp_path, capsys):
    assert (
        main(
            [
                "detect",
                str(tmp_path),
                "--weights",
                str(tmp_path / "none.safetensors"),
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
        == 2
    )
    assert "folder holds no images" in capsys.readouterr().err
    img = tmp_path / "a.png"
    Image.new("RGB", (16, 16)).save(img)
    assert (
        main(
            [
                "detect",
                str(img),
                "--weights",
                str(tmp_path / "none.safetensors"),
                "--out",
                str(tmp_path / "o.json"),
            ]
        )
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["train", "small", "train.stepz=3"]) == 2
    assert "train.stepz" in capsys.readouterr().err


def test_detect_extreme_sizes(trained, tmp_path):
    big = tmp_path / "big.png"
    Image.new("RGB", (10_000, 600), (120, 90, 70)).save(big)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    out = tmp_path / "o.json"
    assert main(["detect", str(big), str(tiny), "--weights", str(trained), "--out", str(out)]) == 1
    res = {r["image"]: r for r in json.loads(out.read_text())["results"]}
    lm = np.array(res[str(big)]["landmarks"])
    assert lm.shape == (68, 2) and np.all(np.isfinite(lm)) and lm[:, 0].max() <= 10_000 * 1.1
    assert "too small" in res[str(tiny)]["error"]


def test_export_fp16_weights_and_onnx_parity(trained, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    import torch

    from sht.infer import Detector, Predictor

    w = tmp_path / "release.safetensors"
    onnx_path = tmp_path / "dhln.onnx"
    assert main(["export", str(trained), "--weights", str(w), "--onnx", str(onnx_path)]) == 0
    assert w.stat().st_size < trained.stat().st_size / 2  # fp16, no optimiser state
    full, half = Predictor.from_checkpoint(trained), Predictor.from_checkpoint(w)
    crop = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    a, b = full.predict([crop])[0], half.predict([crop])[0]
    assert np.abs(a.landmarks - b.landmarks).max() < 0.5
    det = Detector(weights=w)
    assert det.landmarks(crop).shape == (68, 2) and det.hallucinate(crop).size == (32, 32)
    # ONNX Runtime against PyTorch on random inputs, several batch sizes (dynamic batch)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (1, 3, 7):
        x, base = torch.rand(n, 3, 16, 16), torch.rand(n, 3, 32, 32)
        with torch.no_grad():
            out = full.model.eval()(x, base)
        hm, face = sess.run(None, {"input": x.numpy(), "base": base.numpy()})
        worst = max(
            worst, float(np.abs(hm - out.final_heatmaps.numpy()).max()), float(np.abs(face - out.face.numpy()).max())
        )
    print(f"ONNX max abs diff {worst:.2e}")
    assert worst < 1e-4


def test_detect_backend_onnx_on_a_16_px_crop(tmp_path):
    """``sht detect --backend onnx`` (release weights, ONNX Runtime) gives the torch backend's landmarks."""
    pytest.importorskip("onnxruntime")
    from sht.infer import RELEASE_WEIGHTS

    if not RELEASE_WEIGHTS.is_file():
        pytest.skip("release weights not built in this checkout")
    from sht.demo import lfw_faces

    crop = tmp_path / "lfw16.png"
    lfw_faces(1)[0].resize((16, 16), Image.Resampling.BICUBIC).save(crop)
    docs = {}
    for backend in ("torch", "onnx"):
        out = tmp_path / f"{backend}.json"
        args = ["detect", str(crop), "--out", str(out), "--backend", backend, "--threads", "1"]
        assert main([*args, "--save-faces", str(tmp_path / backend)]) == 0
        docs[backend] = json.loads(out.read_text())["results"][0]
    lm = {k: np.array(d["landmarks"]) for k, d in docs.items()}
    assert lm["onnx"].shape == (68, 2)
    assert np.abs(lm["onnx"] - lm["torch"]).max() <= 1e-3 + 1e-9  # values rounded to 1e-3 px in the JSON
    faces = [np.asarray(Image.open(docs[k]["face"]), dtype=int) for k in ("torch", "onnx")]
    assert faces[0].shape == (128, 128, 3) and np.abs(faces[0] - faces[1]).max() <= 1


def test_photo_mode_with_boxes_and_overlays(trained, synth_folder, tmp_path):
    from sht.data.formats import read_pts

    img = synth_folder / "synth_00000.png"
    pts = read_pts(synth_folder / "synth_00000.pts")
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    out = tmp_path / "o.json"
    rc = main(
        [
            "detect",
            str(img),
            "--weights",
            str(trained),
            "--out",
            str(out),
            "--box",
            f"{x0},{y0},{x1},{y1}",
            "--save-overlay",
            str(tmp_path / "ov"),
            "--save-faces",
            str(tmp_path / "faces"),
        ]
    )
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["mode"] == "photo"
    face = doc["results"][0]["faces"][0]
    lm = np.array(face["landmarks"])
    assert lm.shape == (68, 2) and np.all(np.isfinite(lm))
    assert (tmp_path / "ov" / "synth_00000_overlay.png").exists()
    assert Path(face["face"]).exists()
    boxes = tmp_path / "boxes.txt"
    boxes.write_text(f"synth_00000.png {x0} {y0} {x1} {y1}\n")
    assert main(["detect", str(img), "--weights", str(trained), "--out", str(out), "--boxes", str(boxes)]) == 0
    assert len(json.loads(out.read_text())["results"][0]["faces"]) == 1
