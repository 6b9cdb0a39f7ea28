from __future__ import annotations

import json

import pytest

from sht.demo import lfw_faces, run_demo, train_demo
from sht.infer import RELEASE_WEIGHTS


@pytest.mark.skipif(not RELEASE_WEIGHTS.is_file(), reason="release weights not built in this checkout")
def test_default_demo_shows_the_shipped_model_on_real_and_generated_faces(tmp_path):
    report = run_demo(tmp_path, faces=8)
    html = report.read_text()
    assert report.name == "report.html" and html.startswith("<!doctype html>")
    for name in ("lfw_landmarks.png", "lfw_faces.png", "astronaut.png", "generated_16px.png", "generated_64px.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
        assert f"src='{name}'" in html and f"({name})" in (tmp_path / "report.md").read_text()
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["generated"]) == {"16", "32", "64"}
    g16 = doc["generated"]["16"]
    assert g16["model"]["psnr"] > g16["bicubic"]["psnr"]  # hallucination beats bicubic at 16 px
    assert doc["astronaut_agreement_nme"]["16"] < 5.0  # 16 px landmarks agree with the full-resolution ones


def test_lfw_faces_are_the_real_25_px_faces():
    faces = lfw_faces()
    assert len(faces) == 100 and faces[0].size == (25, 25) and faces[0].mode == "RGB"


def test_train_demo_writes_a_report(tmp_path):
    report = train_demo(tmp_path, steps=4, train_faces=32, test_faces=12, progress=False)
    text = report.read_text()
    assert "| 16 | **DHLN (small)** |" in text and "| 64 | bicubic |" in text
    for name in ("ced.png", "faces_16px.png", "faces_64px.png", "training_loss.png", "validation_nme.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["results"]) == {"16", "32", "64"}
    assert doc["results"]["16"]["bicubic"]["psnr"] > 10
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()
