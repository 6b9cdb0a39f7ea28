"""sht's face detector: box targets and decoding, NMS, pyramid and tiles, weights, and bad photos end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from sht.checkpoint import CheckpointError, save_checkpoint
from sht.cli import main
from sht.config import FaceDetectorConfig, config_to_dict, load_detector_config
from sht.data.transforms import canonical_box
from sht.faces import LANDMARK_BOX_CALIBRATION, FaceBox, ShtFaceDetector, make_face_detector
from sht.metrics import detection_summary, match_detections
from sht.models.face_detector import (
    CenterCodec,
    DetectorOutput,
    DetectSettings,
    FaceDetector,
    box_iou,
    detect,
    detect_levels,
    fold_batchnorm,
    merge_levels,
    nms,
    parameter_bytes,
    pyramid_scales,
)

TINY_MODEL = ["model.channels=[8,16,16,24]", "model.blocks=[0,1,0,0]", "model.neck=16"]


def test_default_model_is_small_and_keeps_the_stride():
    cfg = FaceDetectorConfig()
    m = FaceDetector(cfg).eval()
    assert parameter_bytes(m) <= 5 * 1024 * 1024  # the budget for the shipped fp16 weights
    with torch.no_grad():
        out = m(torch.rand(1, 3, 96, 160))
    assert out.heat.shape == (1, 1, 24, 40) and out.size.shape == out.offset.shape == (1, 2, 24, 40)


def test_folded_batchnorm_gives_the_same_maps_and_leaves_the_model_alone():
    torch.manual_seed(0)
    m = FaceDetector(FaceDetectorConfig())
    for mod in m.modules():  # non-trivial running statistics and affine terms
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)
    m.eval()
    folded = fold_batchnorm(m).to(memory_format=torch.channels_last)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in folded.modules())
    assert sum(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules()) > 10  # the original keeps its BatchNorms
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        a, b = m(x), folded(x)
    for name in ("heat", "size", "offset"):
        assert torch.allclose(getattr(a, name), getattr(b, name), atol=1e-4), name


def test_targets_round_trip_through_decoding():
    cfg = FaceDetectorConfig()
    codec = CenterCodec(cfg)
    boxes = torch.tensor(
        [[10.0, 12.0, 22.0, 23.0], [40.3, 8.9, 52.1, 21.0], [60.0, 30.0, 180.0, 150.0], [3.99, 80.0, 15.0, 92.01]]
    )
    tg = codec.encode([boxes], 192, 192)
    assert tg.mask.sum() == 4 and (tg.heat == 1).sum() == 4
    got = codec.decode(tg.heat, tg.size, tg.offset, threshold=0.99)[0]
    assert len(got) == 4
    order = got[:, 0].argsort()
    want = boxes[boxes[:, 0].argsort()]
    assert torch.allclose(got[order, :4], want, atol=1e-4), got
    assert torch.all(got[:, 4] == 1)


def test_targets_skip_outside_centres_and_zero_ignored_regions():
    codec = CenterCodec(FaceDetectorConfig())
    outside = torch.tensor([[-30.0, 10.0, -2.0, 40.0]])
    tg = codec.encode([outside], 64, 64, ignore=[torch.tensor([[0.0, 0.0, 16.0, 16.0]])])
    assert tg.mask.sum() == 0 and tg.heat.max() == 0
    assert tg.weight[0, 0, :4, :4].sum() == 0 and tg.weight[0, 0, 5:, 5:].min() == 1


def test_decoding_picks_local_maxima_above_the_threshold():
    codec = CenterCodec(FaceDetectorConfig())
    heat = torch.zeros(1, 1, 20, 30)
    heat[0, 0, 5, 7] = 0.9
    heat[0, 0, 5, 8] = 0.8  # a neighbour of a stronger peak: not a peak
    heat[0, 0, 15, 20] = 0.5
    heat[0, 0, 2, 25] = 0.2  # below the threshold
    size = torch.zeros(1, 2, 20, 30)
    size[0, :, 15, 20] = math.log(2.0)  # 32 px wide and high
    offset = torch.full((1, 2, 20, 30), 0.5)
    got = codec.decode(heat, size, offset, threshold=0.3)[0]
    assert got.shape == (2, 5)
    assert torch.allclose(got[0], torch.tensor([30 - 8, 22 - 8, 30 + 8, 22 + 8, 0.9]))
    assert torch.allclose(got[1], torch.tensor([82 - 16, 62 - 16, 82 + 16, 62 + 16, 0.5]))
    assert codec.decode(heat, size, offset, threshold=0.95)[0].shape == (0, 5)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]])
    scores = torch.tensor([0.5, 0.9, 0.7, 0.1])
    assert nms(boxes, scores, 0.4).tolist() == [1, 2]
    assert nms(boxes, scores, 1.0).tolist() == [1, 2, 0, 3]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.4).numel() == 0
    assert box_iou(boxes[:1], boxes[3:]).item() == pytest.approx(1.0)


class _MarkModel(torch.nn.Module):
    """Fires where the red channel is 1 (one peak per 4x4 white mark), boxes 16 px: pyramid and tile checks."""

    def __init__(self, cfg: FaceDetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        red = torch.nn.functional.avg_pool2d(x[:, :1], self.cfg.stride)
        heat = (red - 0.5) * 40
        b, _, h, w = heat.shape
        return DetectorOutput(heat, torch.zeros(b, 2, h, w), torch.full((b, 2, h, w), 0.5))


def test_tiles_find_what_one_pass_finds():
    cfg = FaceDetectorConfig(max_face=24)
    img = torch.zeros(3, 150, 230)
    marks = [(8, 12), (100, 60), (200, 120), (64, 128)]
    for x, y in marks:
        img[:, y : y + 4, x : x + 4] = 1
    one = detect(_MarkModel(cfg), img, DetectSettings(tile=4096, max_levels=1))
    tiled = detect(_MarkModel(cfg), img, DetectSettings(tile=64, max_levels=1))
    assert len(one) == len(marks) == len(tiled)
    key = lambda t: sorted(map(tuple, t[:, :4].round().tolist()))  # noqa: E731
    assert key(one) == key(tiled)
    assert key(one) == sorted((x + 2.0 - 8, y + 2.0 - 8, x + 2.0 + 8, y + 2.0 + 8) for x, y in marks)


def test_pyramid_levels_cover_large_faces_and_cap_huge_photos():
    cfg = FaceDetectorConfig()
    s = DetectSettings()
    assert pyramid_scales(640, 480, cfg, s) == [1.0, 0.5, 0.25, 0.125, 0.0625]  # the last: faces of 29-64 px there
    assert pyramid_scales(100, 80, cfg, s) == [1.0, 0.5]
    assert pyramid_scales(40, 30, cfg, s) == [1.0]
    big = pyramid_scales(10_000, 10_000, cfg, s)
    assert big[0] == pytest.approx(0.4) and len(big) <= s.max_levels


def test_landmark_box_calibration_is_the_canonical_crop():
    rng = np.random.default_rng(0)
    pts = rng.uniform(10, 60, (68, 2)) * [1.0, 1.3]
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    got = LANDMARK_BOX_CALIBRATION.to_crop(FaceBox(x0, y0, x1, y1))
    want = canonical_box(pts, 1.3)
    assert (got.x0, got.y0, got.side) == pytest.approx((want.x0, want.y0, want.side))


def test_detection_metrics_match_at_iou():
    truth = np.array([[0, 0, 10, 10], [50, 50, 70, 70]])
    pred = np.array([[1, 1, 11, 11, 0.9], [0, 0, 10, 10, 0.8], [50, 50, 70, 70, 0.3], [90, 90, 99, 99, 0.6]])
    scores, flags, found = match_detections(pred, truth, 0.3, ignore=np.array([[85, 85, 100, 100]]))
    assert flags.tolist() == [1, 0, -1, 1] and found.tolist() == [0.9, 0.3]
    s = detection_summary([pred], [truth], 0.3, threshold=0.5)
    assert s["recall"] == 0.5 and s["fp_per_image"] == 2.0
    assert detection_summary([np.zeros((0, 5))], [np.zeros((0, 4))])["fp_per_image"] == 0


# --------------------------------------------------------------------------------------------------------------
# Weights, the Detector and the CLI
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    """An untrained tiny face detector saved as a training checkpoint (as sht train-detector writes it)."""
    cfg = load_detector_config("small", TINY_MODEL)
    torch.manual_seed(0)
    m = FaceDetector(cfg.model)
    path = tmp_path_factory.mktemp("fd") / "fd.safetensors"
    return save_checkpoint(path, {"detector": m}, None, {"stage": "face_detector", "config": config_to_dict(cfg)})


def _bad_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(3)
    noise = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
    return {
        "1x1": Image.new("RGB", (1, 1), (200, 10, 10)),
        "strip": Image.new("RGB", (10_000, 24), (90, 120, 60)),
        "grey": Image.fromarray(noise[..., 0]),
        "16bit": Image.fromarray((rng.integers(0, 65535, (64, 80))).astype(np.uint16)),
        "cmyk": Image.fromarray(noise).convert("CMYK"),
        "rgba": Image.fromarray(noise).convert("RGBA"),
        "noface": Image.fromarray(noise),
    }


def test_sht_face_detector_takes_any_photo(detector_weights):
    fd = make_face_detector(str(detector_weights))
    assert isinstance(fd, ShtFaceDetector) and fd.calibration is LANDMARK_BOX_CALIBRATION
    for name, img in _bad_images().items():
        found = fd(img)
        assert isinstance(found, list), name
        for b in found:
            assert isinstance(b, FaceBox) and 0 <= b.score <= 1 and b.x1 > b.x0
    low = ShtFaceDetector(detector_weights, threshold=0.001, max_pixels=5000)
    found = low(Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)))
    # reduced for the cap, boxes in photo pixels: centres on the photo or on the frame added to the reduced photo
    m = low.settings.border / (5000 / (300 * 400)) ** 0.5 + 2
    assert found and all(-m < (b.x0 + b.x1) / 2 < 400 + m and -m < (b.y0 + b.y1) / 2 < 300 + m for b in found)
    assert max(b.x1 - b.x0 for b in found) > 100  # in photo pixels, not the reduced photo's


def test_missing_shipped_weights_is_one_clear_line(monkeypatch, tmp_path, capsys):
    import sht.faces

    monkeypatch.setattr(sht.faces, "FACE_DETECTOR_WEIGHTS", tmp_path / "face-detector.safetensors")
    with pytest.raises(CheckpointError, match="no face-detector weights in this installation"):
        make_face_detector("sht")
    photo = tmp_path / "p.png"
    Image.new("RGB", (64, 48)).save(photo)
    assert (
        main(["detect", str(photo), "--find-faces", "--face-detector", "sht", "--out", str(tmp_path / "o.json")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no face-detector weights" in err[0]
    with pytest.raises(ValueError, match="unknown face detector"):
        make_face_detector("yolo")
    # without shipped weights the default falls back to Haar
    assert sht.faces.default_face_detector() == "haar"


def test_shipped_detector_is_the_default():
    import sht
    from sht.faces import FACE_DETECTOR_WEIGHTS, default_face_detector

    assert FACE_DETECTOR_WEIGHTS.is_file() and FACE_DETECTOR_WEIGHTS.stat().st_size < 5e6  # the 5 MB
    assert default_face_detector() == "sht"
    det = sht.Detector()
    assert det.face_detector_name == "sht" and det.face_detector().name == "sht"
    assert sht.Detector(face_detector="haar").face_detector().name == "haar"


def test_detector_detect_on_bad_photos(detector_weights):
    from sht.infer import Detector

    det = Detector(face_detector=str(detector_weights))
    for name, img in _bad_images().items():
        faces = det.detect(img)
        assert isinstance(faces, list), name
        for f in faces:
            assert f.landmarks.shape == (68, 2) and f.box_score is not None
    # given boxes are read as landmark boxes: the crop (before refinement) is their canonical crop
    det.refine = 0
    got = det.detect(Image.new("RGB", (80, 80), (120, 100, 90)), boxes=[[20, 20, 60, 50]])
    assert got[0].box_score is None and got[0].crop == pytest.approx((14.0, 9.0, 52.0))
    # an (untrained) detector that fires everywhere: every box goes through the landmark model with its score
    det = Detector(face_detector=ShtFaceDetector(detector_weights, threshold=0.001))
    faces = det.detect(_bad_images()["noface"].crop((0, 0, 64, 48)))
    assert faces and all(f.box_score >= 0.001 and f.landmarks.shape == (68, 2) for f in faces)


def test_cli_find_faces_on_bad_files(detector_weights, tmp_path, capsys):
    files = []
    for name, img in _bad_images().items():
        p = tmp_path / f"{name}.{'jpg' if name == 'cmyk' else 'png'}"
        img.save(p)
        files.append(p)
    out = tmp_path / "o.json"
    overlays = tmp_path / "ov"
    args = ["detect", *map(str, files), "--find-faces", "--face-detector", str(detector_weights), "--out", str(out)]
    rc = main([*args, "--save-overlay", str(overlays)])
    assert rc == 1  # the 1x1 photo is refused in one line, the others are processed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1x1.png" in err[0] and "too small" in err[0]
    res = {r["image"]: r for r in json.loads(out.read_text())["results"]}
    assert "error" in res[str(tmp_path / "1x1.png")]
    for p in files[1:]:
        assert isinstance(res[str(p)]["faces"], list)
        assert (overlays / f"{p.stem}_overlay.png").exists()
    assert main([*args[:-4], "--face-detector", "nothing.safetensors", "--out", str(out)]) == 2
    assert "--face-detector takes" in capsys.readouterr().err
    assert main([*args[:-4], "--find-faces", "dlib", "--face-detector", "sht", "--out", str(out)]) == 2


def test_calibrated_threshold_is_the_lowest_score_within_the_false_positive_target():
    from types import SimpleNamespace

    from sht.train.face_detector import calibrate_threshold

    photo = torch.zeros(3, 480, 640)  # one 640x480 photo: the unit of the target
    val = [SimpleNamespace(image=photo, boxes=torch.tensor([[0.0, 0, 10, 10]]), ignore=torch.zeros(0, 4))]
    dets = np.array([[0, 0, 10, 10, 0.9], [50, 50, 60, 60, 0.5], [70, 70, 80, 80, 0.3]])
    stage = SimpleNamespace(val=val, predict=lambda images: [dets])
    assert calibrate_threshold(stage, 0.0) == pytest.approx(0.9)  # both false positives dropped
    assert calibrate_threshold(stage, 1.0) == pytest.approx(0.5)  # one allowed: the 0.3 one goes
    assert calibrate_threshold(stage, 2.0) == pytest.approx(0.3)
    # per area: on a quarter of a photo, 1 false positive per photo allows none
    stage.val = [SimpleNamespace(image=torch.zeros(3, 240, 320), boxes=val[0].boxes, ignore=val[0].ignore)]
    assert calibrate_threshold(stage, 1.0) == pytest.approx(0.9)
    assert calibrate_threshold(stage, 4.0) == pytest.approx(0.5)


def test_border_keeps_boxes_in_photo_pixels():
    """``DetectSettings.border`` frames the photo in its mean colour; boxes stay in the photo's own pixels."""
    from sht.data.synthetic import SyntheticFaceConfig, generate

    img, pts = generate(10, seed=3, cfg=SyntheticFaceConfig(image_size=64))[4]
    photo = Image.new("RGB", (200, 120), (70, 80, 90))
    photo.paste(img, (60, 30))
    plain, framed = ShtFaceDetector(border=0)(photo), ShtFaceDetector(border=8)(photo)
    assert len(plain) == len(framed) == 1
    a, b = plain[0], framed[0]
    assert max(abs(a.x0 - b.x0), abs(a.y0 - b.y0), abs(a.x1 - b.x1), abs(a.y1 - b.y1)) < 2.0
    truth = np.concatenate([pts.min(0), pts.max(0)]) + [60, 30, 60, 30]
    assert np.abs(np.array([b.x0, b.y0, b.x1, b.y1]) - truth).max() < 6  # the landmark box, ~30 px


def test_enlarged_level_keeps_only_small_faces_in_photo_pixels():
    """``DetectSettings.upsample``: the photo enlarged once more; its boxes come back in the photo's pixels, only
    those under ``upsample_below``, and :func:`detect` is their merge with the pyramid's at the two thresholds."""
    cfg = FaceDetectorConfig(max_face=24)
    img = torch.zeros(3, 96, 128)
    marks = [(20, 20), (80, 52)]
    for x, y in marks:
        img[:, y : y + 4, x : x + 4] = 1
    model = _MarkModel(cfg)
    pyr, small = detect_levels(model, img, DetectSettings(max_levels=1))
    assert len(pyr) == len(marks) and len(small) == 0  # no enlarged level by default
    s = DetectSettings(max_levels=1, upsample=2.0, upsample_below=12.0)
    pyr, small = detect_levels(model, img, s)
    assert len(small) >= len(marks)
    side = torch.maximum(small[:, 2] - small[:, 0], small[:, 3] - small[:, 1])
    assert (side < 12.0).all() and side.min() > 6.0  # the mark model's 16-px box at 2x: 8 px of the photo
    centres = torch.stack([(small[:, 0] + small[:, 2]) / 2, (small[:, 1] + small[:, 3]) / 2], 1)
    truth = torch.tensor([[x + 2.0, y + 2.0] for x, y in marks])
    assert torch.cdist(truth, centres).min(1).values.max() < 1.5
    merged = detect(model, img, s)
    torch.testing.assert_close(merged, merge_levels(pyr, small, s.threshold, s.threshold, s.nms_iou))
    assert len(merge_levels(pyr, small, s.threshold, 1.01, s.nms_iou)) == len(marks)  # enlarged level switched off
    capped = DetectSettings(max_levels=1, upsample=2.0, max_pixels=96 * 128 * 2)
    assert len(detect_levels(model, img, capped)[1]) == 0  # the enlarged photo would pass max_pixels


def test_exported_weights_carry_their_operating_point(detector_weights, tmp_path):
    from sht.export import export_face_detector

    out = export_face_detector(detector_weights, tmp_path / "fd.safetensors", threshold=0.6, upsample=(1.5, 0.7, 24.0))
    s = ShtFaceDetector(out).settings
    assert (s.threshold, s.upsample, s.upsample_threshold) == (pytest.approx(0.6), 1.5, pytest.approx(0.7))
    assert s.upsample_below == 24.0
    assert ShtFaceDetector(out, upsample=1.0).settings.upsample == 1.0
    assert ShtFaceDetector(detector_weights).settings.upsample == 1.0  # older weights: no enlarged level
