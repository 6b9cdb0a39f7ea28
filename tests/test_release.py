"""The release weights shipped inside the package: they load offline, match their config, and give sensible
landmarks and faces at 16 px on a real photo (scikit-image's astronaut) and on generated faces."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from sht import Detector
from sht.cli import main
from sht.config import load_config
from sht.data import degradation
from sht.data.synthetic import generate
from sht.data.transforms import canonical_crop, image_to_tensor, tensor_to_image
from sht.infer import RELEASE_WEIGHTS, Predictor, release_members
from sht.metrics import nme, psnr_y

pytestmark = pytest.mark.skipif(not RELEASE_WEIGHTS.is_file(), reason="release weights not built in this checkout")


def degrade(hr_img: Image.Image, size: int) -> Image.Image:
    hr = degradation.quantize(image_to_tensor(hr_img)[None].float() / 255)
    return tensor_to_image(degradation.downsample(hr, size)[0])


def test_release_weights_are_small_fp16_with_provenance():
    members = release_members()
    assert sum(m[0].stat().st_size for m in members) < 25e6  # the whole family
    small = load_config("small").model
    for path, _, _ in members:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata()
            dtypes = {f.get_tensor(k).dtype for k in f.keys()}
        assert torch.float16 in dtypes, path
        doc = json.loads(meta["sht"])
        assert doc["modules"] == ["dhln"] and doc["dtype"] == "float16"
        model = Predictor.from_checkpoint(path).config.model
        assert dataclasses.replace(model, input_size=small.input_size) == small, path  # the small preset at its input
        assert "benchmarks/release.py" in json.loads(doc["note"])["command"]
    assert Detector().config.model == Predictor.from_checkpoint(members[-1][0]).config.model


def test_detector_on_generated_faces_at_16_px():
    det = Detector()
    errs, gains = [], []
    for img, pts in generate(12, seed=777):
        hr_img, hr_pts, _ = canonical_crop(img, pts, 128, det.config.data.margin)
        lr = degrade(hr_img, 16)
        pred = det.predictor.predict([lr])[0]
        errs.append(nme(pred.landmarks[None] * 8, hr_pts[None], "inter_ocular")[0])
        hr = np.asarray(hr_img)
        bic = np.asarray(lr.resize((128, 128), Image.Resampling.BICUBIC))
        gains.append(psnr_y(np.asarray(pred.face), hr)[0] - psnr_y(bic, hr)[0])
    # generated faces are outside the training distribution (real faces): the detector still localises them
    assert np.mean(errs) < 0.09, errs
    assert np.mean(gains) > 1.0, gains


@pytest.fixture(scope="module")
def astronaut():
    skdata = pytest.importorskip("skimage.data")
    return Image.fromarray(skdata.astronaut())


def test_detect_astronaut_full_photo_and_16_px_crop(astronaut):
    det = Detector()
    faces = det.detect(astronaut)
    assert len(faces) == 1
    pts = faces[0].landmarks
    x0, y0, x1, y1 = faces[0].box
    # the 68 points lie on the face, in anatomical order: eyes above nose above mouth above chin
    assert (pts[:, 0] > x0 - 0.2 * (x1 - x0)).all() and (pts[:, 0] < x1 + 0.2 * (x1 - x0)).all()
    eyes, nose, mouth, chin = pts[36:48, 1].mean(), pts[30, 1], pts[48:68, 1].mean(), pts[8, 1]
    assert eyes < nose < mouth < chin
    assert pts[36:42, 0].mean() < pts[42:48, 0].mean()  # subject's right eye on the image's left
    # a 16 px canonical crop from those points: the landmarks found at 16 px agree with those at 512 px
    hr_img, hr_pts, _ = canonical_crop(astronaut, pts, 128, det.config.data.margin)
    lr16 = degrade(hr_img, 16)
    low = det.landmarks(lr16) * 8
    assert nme(low[None], hr_pts[None], "inter_ocular")[0] < 0.05


def test_astronaut_at_16_px_against_dlib_teacher(astronaut):
    """An independent reference: dlib's 68-point model on the full-resolution photo (the `dlib` extra)."""
    pytest.importorskip("dlib")
    from sht.teacher import DlibTeacher

    ref = DlibTeacher()(astronaut)
    assert ref is not None
    det = Detector()
    full = det.detect(astronaut)[0].landmarks
    assert nme(full[None], ref[None], "inter_ocular")[0] < 0.05
    hr_img, hr_pts, _ = canonical_crop(astronaut, ref, 128, det.config.data.margin)
    low = det.landmarks(degrade(hr_img, 16)) * 8
    assert nme(low[None], hr_pts[None], "inter_ocular")[0] < 0.06


def test_cli_detect_astronaut_at_16_px_uses_shipped_weights(astronaut, tmp_path):
    det = Detector()
    face = det.detect(astronaut)[0]
    hr_img, _, _ = canonical_crop(astronaut, face.landmarks, 128, det.config.data.margin)
    degrade(hr_img, 16).save(tmp_path / "astronaut16.png")
    out = tmp_path / "out.json"
    rc = main(["detect", str(tmp_path / "astronaut16.png"), "--out", str(out), "--save-faces", str(tmp_path / "f")])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["weights"] == " + ".join(str(m[0]) for m in release_members())  # the shipped family
    pts = np.array(res["results"][0]["landmarks"])
    assert pts.shape == (68, 2) and (pts > 0).all() and (pts < 16).all()
    assert Image.open(next((tmp_path / "f").iterdir())).size == (128, 128)
