"""Composite training images of the face detector, and a short training run on generated faces."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sht.config import CompositeConfig, load_detector_config
from sht.data.composites import (
    BENCHMARK_BACKGROUNDS,
    HELD_OUT_IMAGES,
    CompositeBuilder,
    FaceBank,
    build_training_data,
    image_rng,
    load_backgrounds,
    sample_image_files,
    split_faces,
)
from sht.data.dataset import FaceSet
from sht.faces import make_face_detector
from sht.train.face_detector import DetectorStage, train_detector
from sht.train.logging import read_metrics
from sht.train.trainer import Trainer

PLAIN = {"lowres": 0.0, "blur": 0.0, "noise": 0.0, "grey": 0.0, "jpeg": 0.0, "colour": 0.0, "negatives": 0}


def _red_face_bank(n: int = 6, size: int = 128) -> FaceBank:
    """'Faces' that are a red ellipse on grey, their 68 points on its outline (so its box is the landmark box)."""
    rng = np.random.default_rng(0)
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    imgs = torch.full((n, 3, size, size), 128, dtype=torch.uint8)
    pts = torch.zeros(n, 68, 2)
    t = torch.linspace(0, 2 * np.pi, 69)[:-1]
    for i in range(n):
        a, b = rng.uniform(28, 32, 2)  # never enlarged: the outline is exact to a pixel of the source
        inside = ((xx - size / 2) / a) ** 2 + ((yy - size / 2) / b) ** 2 <= 1
        imgs[i, 0][inside], imgs[i, 1][inside], imgs[i, 2][inside] = 255, 0, 0
        pts[i] = torch.stack([size / 2 + a * torch.cos(t), size / 2 + b * torch.sin(t)], 1)
    faces = FaceSet(imgs, pts, [f"ellipse_{i}" for i in range(n)], size, 1.0)
    return FaceBank(faces, torch.tensor([[0.0, 0.0, size, size]]).repeat(n, 1), faces.names)


def _red_extent(img: torch.Tensor, box: torch.Tensor) -> tuple[float, float, float, float]:
    """Bounding box (pixel edges) of the red region under the centre of ``box``."""
    from skimage.measure import label

    red = (img[0] - torch.maximum(img[1], img[2]) > 0.3).numpy()  # at least a third red (grey or blue around)
    parts = label(red, connectivity=1)
    x0, y0, x1, y1 = box.clamp(0, img.shape[-1] - 1).tolist()
    ys, xs = np.nonzero(parts == parts[int((y0 + y1) / 2), int((x0 + x1) / 2)])
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


@pytest.mark.parametrize("rotation", [0.0, 25.0])
def test_faces_are_pasted_where_their_boxes_say(rotation):
    cfg = dataclasses.replace(CompositeConfig(), **PLAIN, rotation=rotation, min_face=20, max_face=60)
    blue = torch.zeros(3, 200, 200, dtype=torch.uint8)
    blue[2] = 255
    builder = CompositeBuilder(_red_face_bank(), [blue], cfg, procedural=0.0)
    seen = 0
    for seed in range(6):
        c = builder.compose(image_rng(seed, 0, 0), 200, 200, sizes=[24, 40, 56], border=0.0)
        for box in c.boxes:
            got = _red_extent(c.image, box)
            want = box.clamp(0, 200).tolist()  # the part inside the image
            assert np.allclose(got, want, atol=1.0), (got, want)
            side = max(box[2] - box[0], box[3] - box[1]).item()
            seen += 1
            if rotation == 0:  # the landmark box's larger side is the size asked for
                assert min(abs(side - s) for s in (24, 40, 56)) < 0.5, side
    assert seen >= 12


def test_composites_are_deterministic_and_cut_faces_are_ignored():
    cfg = dataclasses.replace(CompositeConfig(), **PLAIN, rotation=0.0)
    builder = CompositeBuilder(_red_face_bank(), [], cfg)
    a = builder.compose(image_rng(7, 3, 1))
    b = builder.compose(image_rng(7, 3, 1))
    assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.image, builder.compose(image_rng(7, 3, 2)).image)
    ignored = 0
    for seed in range(20):
        c = builder.compose(image_rng(seed, 0, 0), 96, 96, sizes=[40, 40, 40], border=0.5)
        for x0, y0, x1, y1 in c.boxes.tolist():
            assert 0 <= (x0 + x1) / 2 < 96 and 0 <= (y0 + y1) / 2 < 96
        for x0, y0, x1, y1 in c.ignore.tolist():
            cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
            assert not (0 <= cx < 96 and 0 <= cy < 96)
            ignored += 1
    assert ignored > 0


def test_training_data_holds_out_faces_by_identity_and_the_benchmark_photos():
    cfg = CompositeConfig(train=["synthetic:30"], val_images=4, cache_dir="", image_size=96)
    builder, val = build_training_data(cfg)
    assert len(val) == 4 and all(v.image.shape == (3, 96, 96) for v in val)
    names = sample_image_files()
    assert "astronaut" in names and "grace_hopper" in names
    assert len(builder.backgrounds) == len(
        [n for n in names if n not in HELD_OUT_IMAGES and n not in BENCHMARK_BACKGROUNDS]
    )
    bank = builder.faces
    fit, held = split_faces(bank, 0.5, 1)
    assert held is not None and not set(fit.keys) & set(held.keys)
    images, boxes, ignore = builder.batch(0, 5, 3)
    assert images.shape == (3, 3, 96, 96) and len(boxes) == len(ignore) == 3
    assert images.min() >= 0 and images.max() <= 1
    with pytest.raises(Exception, match="neither 'builtin' nor a folder"):
        load_backgrounds(["/nonexistent/backgrounds"])


TINY = [
    "data.train=[synthetic:40]",
    "data.val_images=8",
    "data.image_size=96",
    "data.cache_dir=",
    "model.channels=[8,16,16,24]",
    "model.blocks=[0,1,0,0]",
    "model.neck=16",
    "train.batch_size=8",
    "train.lr=0.004",
    "train.warmup_steps=5",
    "train.log_every=5",
    "train.eval_every=1000",
    "train.progress=false",
    "train.tensorboard=false",
    "train.threads=1",
]


def test_short_training_on_generated_composites_reduces_the_loss(tmp_path):
    cfg = load_detector_config(
        "small", [*TINY, "train.steps=60", "train.checkpoint_every=30", f"train.out_dir={tmp_path}"]
    )
    metrics = train_detector(cfg)
    log = read_metrics(tmp_path / "metrics.csv")
    first, last = np.mean([v for _, v in log["train/total"][:2]]), np.mean([v for _, v in log["train/total"][-2:]])
    assert last < 0.7 * first, (first, last)
    assert {"val/ap30", "val/recall50", "val/fp30"} <= set(metrics)
    weights = tmp_path / "face-detector.safetensors"
    assert weights.is_file() and weights.stat().st_size < (tmp_path / "checkpoints" / "last.safetensors").stat().st_size
    fd = make_face_detector(str(weights))
    assert isinstance(fd(Image.new("RGB", (50, 40))), list)


def test_detector_training_resumes_exactly(tmp_path):
    cfg = load_detector_config("small", [*TINY, "data.val_images=0", "train.steps=8", "train.checkpoint_every=4"])
    builder, _ = build_training_data(cfg.data)

    def run(c, out):
        torch.manual_seed(0)
        Trainer(c, DetectorStage(c, torch.device("cpu"), builder, []), out).fit()

    run(cfg, tmp_path / "straight")
    half = load_detector_config("small", [*TINY, "data.val_images=0", "train.steps=4", "train.checkpoint_every=4"])
    run(half, tmp_path / "resumed")
    torch.manual_seed(123)
    Trainer(cfg, DetectorStage(cfg, torch.device("cpu"), builder, []), tmp_path / "resumed").fit()
    a = load_file(str(tmp_path / "straight" / "checkpoints" / "last.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_train_detector_cli(tmp_path, capsys):
    from sht.cli import main

    out = tmp_path / "run"
    assert main(["train-detector", "small", *TINY, "data.val_images=0", "train.steps=2", "--out", str(out)]) == 0
    assert (out / "face-detector.safetensors").is_file() and (out / "metrics.csv").is_file()
    assert "face-detector.safetensors" in capsys.readouterr().out
    assert main(["train", "detector/small"]) == 2
    assert "sht train-detector detector/small" in capsys.readouterr().err


def test_fine_tuning_starts_from_an_export_and_mines_its_mistakes(tmp_path):
    from sht.checkpoint import CheckpointError
    from sht.config import ConfigError
    from sht.train.face_detector import mined_negatives

    first = tmp_path / "first"
    cfg = load_detector_config("small", [*TINY, "data.val_images=0", "train.steps=2", f"train.out_dir={first}"])
    train_detector(cfg)
    export = first / "face-detector.safetensors"
    shipped = load_file(str(export))

    tuned = load_detector_config("small", [*TINY, "data.val_images=0", f"init={export}"])
    stage = DetectorStage(tuned, torch.device("cpu"))
    own = stage.model.state_dict()
    assert all(torch.equal(own[k], shipped["detector." + k].float()) for k in own)  # fp16 export, widened

    wider = load_detector_config("small", [*TINY, "model.neck=24", f"init={export}"])
    with pytest.raises(CheckpointError, match="do not fit the configured model"):
        DetectorStage(wider, torch.device("cpu"))
    with pytest.raises(ConfigError, match="needs init"):
        load_detector_config("small", [*TINY, "data.mine_images=4"])

    # an untrained detector's scores sit near its 0.01 prior: at 0.005 it fires everywhere, off the faces too
    mining = load_detector_config(
        "small", [*TINY, "data.val_images=0", f"init={export}", "data.mine_images=3", "data.mine_threshold=0.005"]
    )
    stage = DetectorStage(mining, torch.device("cpu"))
    patches = mined_negatives(tmp_path / "mined", stage)
    assert patches.dtype == torch.uint8 and patches.shape[1:] == (3, 32, 32) and len(patches) > 0
    again = mined_negatives(tmp_path / "mined", DetectorStage(mining, torch.device("cpu")))  # read, not mined
    assert torch.equal(again, patches)
    run = tmp_path / "tuned"
    train_detector(dataclasses.replace(mining, train=dataclasses.replace(mining.train, steps=2, out_dir=str(run))))
    assert (run / "hard-negatives.safetensors").is_file() and (run / "face-detector.safetensors").is_file()

    builder, _ = build_training_data(mining.data)
    rng_a, rng_b = image_rng(0, 0, 0), image_rng(0, 0, 0)
    plain = [builder.negative_patch(rng_a, 20.0)[0] for _ in range(12)]
    builder.add_mined(torch.full((1, 3, 32, 32), 7, dtype=torch.uint8))
    mixed = [builder.negative_patch(rng_b, 20.0)[0] for _ in range(12)]
    assert any(not torch.equal(a, b) for a, b in zip(plain, mixed, strict=True))


def test_thumbnail_composites_cut_one_face_tightly_onto_a_plain_frame():
    cfg = load_detector_config("small", [*TINY, "data.val_images=0", "data.thumbnails=1.0"]).data
    builder, _ = build_training_data(dataclasses.replace(cfg, noise=0.0, jpeg=0.0))
    for i in range(8):
        c = builder.compose(image_rng(3, 0, i))
        assert c.image.shape == (3, 96, 96) and c.boxes.shape == (1, 4) and len(c.ignore) == 0
        x0, y0, x1, y1 = c.boxes[0].tolist()
        side = max(x1 - x0, y1 - y0)
        assert cfg.min_face - 0.5 <= side <= 32.5
        plain = c.image[:, 0, 0]  # a corner of the frame: at most one corner can be covered by the thumbnail
        corners = [c.image[:, 0, 0], c.image[:, 0, -1], c.image[:, -1, 0], c.image[:, -1, -1]]
        assert sum(torch.allclose(k, plain, atol=1 / 255) for k in corners) >= 3
