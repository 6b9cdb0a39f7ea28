from __future__ import annotations

import json

from sht.demo import run_demo


def test_demo_writes_a_report(tmp_path):
    report = run_demo(tmp_path, steps=4, train_faces=32, test_faces=12, progress=False)
    text = report.read_text()
    assert "| 16 | **DHLN (small)** |" in text and "| 64 | bicubic |" in text
    for name in ("ced.png", "faces_16px.png", "faces_64px.png", "training_loss.png", "validation_nme.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    doc = json.loads((tmp_path / "results.json").read_text())
    assert set(doc["results"]) == {"16", "32", "64"}
    assert doc["results"]["16"]["bicubic"]["psnr"] > 10
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()
