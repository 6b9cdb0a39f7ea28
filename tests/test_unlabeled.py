from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sht.config import WeakConfig
from sht.data.formats import DataError
from sht.data.synthetic import SyntheticFaceConfig, generate
from sht.data.transforms import CropBox
from sht.data.unlabeled import fixed_crop, frame_clips, load_unlabeled_images, load_videos, read_video_frames
from sht.faces import HaarFaceDetector, smooth_crops


@pytest.fixture(scope="module")
def faces64():
    return generate(6, seed=9, cfg=SyntheticFaceConfig(image_size=64))


def test_unlabeled_folder_fixed_crop(tmp_path, faces64):
    for i, (img, _) in enumerate(faces64):
        img.save(tmp_path / f"u{i}.png")
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    fs = load_unlabeled_images([str(tmp_path)], 32, 1.5, WeakConfig(box=[0.5, 0.5, 0.7]))
    assert fs.points is None and not fs.labeled and len(fs) == 6
    assert fs.images.shape == (6, 3, 48, 48)
    assert len(fs.problems) == 1 and "broken.jpg" in fs.problems[0]
    assert fs.groups is None


def test_fixed_crop_geometry():
    img = Image.new("RGB", (200, 100))
    c = fixed_crop(img, [0.5, 0.5, 0.8])
    assert (c.x0 + c.side / 2, c.y0 + c.side / 2, c.side) == pytest.approx((100, 50, 80))


def test_frame_clips_group_by_pattern(tmp_path, faces64):
    names = ["Ann_Lee_10", "Ann_Lee_11", "Ann_Lee_20", "Bo_12", "Bo_13"]
    for n, (img, _) in zip(names, faces64, strict=False):
        img.save(tmp_path / f"{n}.jpg")
    clips = frame_clips(tmp_path, WeakConfig().clip_pattern)
    assert {k: len(v) for k, v in clips.items()} == {"Ann_Lee/1": 2, "Ann_Lee/2": 1, "Bo/1": 2}
    fs = load_videos([str(tmp_path)], 32, 1.0, WeakConfig())
    assert fs.groups.tolist() == [0, 0, 1, 2, 2] and len(fs) == 5
    (tmp_path / "odd.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="does not match the clip pattern"):
        frame_clips(tmp_path, WeakConfig().clip_pattern)


def test_video_file_frames(tmp_path, faces64):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    path = tmp_path / "clip.mp4"
    w = imageio_ffmpeg.write_frames(str(path), (64, 64), fps=10, macro_block_size=1)
    w.send(None)
    for img, _ in faces64:
        w.send(np.ascontiguousarray(np.asarray(img)))
    w.close()
    frames = read_video_frames(path, 4)
    assert len(frames) == 4 and frames[0].size == (64, 64)
    fs = load_videos([str(path)], 32, 1.0, WeakConfig(frames_per_video=5))
    assert len(fs) == 5 and fs.groups.tolist() == [0] * 5
    with pytest.raises(DataError, match="not found"):
        read_video_frames(tmp_path / "none.mp4", 3)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(DataError, match="cannot decode"):
        read_video_frames(tmp_path / "bad.mp4", 3)


def test_detector_policy_needs_a_locator(tmp_path, faces64):
    faces64[0][0].save(tmp_path / "a.png")
    with pytest.raises(DataError, match="needs a face locator"):
        load_unlabeled_images([str(tmp_path)], 32, 1.0, WeakConfig(crop="detector"))


def test_detector_policy_uses_the_given_locator(tmp_path, faces64):
    """The data layer runs no network: the crops come from the callable the caller hands in."""
    for i, (img, _) in enumerate(faces64[:3]):
        img.save(tmp_path / f"{i}.png")
    seen = []

    def locator(images, fallback, track):
        seen.append((len(images), len(fallback), track))
        return [CropBox(0.0, 0.0, float(im.size[0]) / 2) for im in images]

    fs = load_unlabeled_images([str(tmp_path)], 32, 1.0, WeakConfig(crop="detector"), locator)
    assert seen == [(3, 3, False)] and len(fs) == 3


def test_smooth_crops_removes_jitter():
    crops = [CropBox(10.0, 10.0, 50.0)] * 5
    crops[2] = CropBox(30.0, 10.0, 50.0)
    out = smooth_crops(crops, 3)
    assert out[2].x0 == pytest.approx(10.0)


def test_haar_detector_finds_the_astronaut():
    from skimage import data as skdata

    boxes = HaarFaceDetector()(Image.fromarray(skdata.astronaut()))
    assert boxes, "no face found"
    b = boxes[0]
    # the astronaut's face is around x 170-290, y 40-170 in the 512 px image
    assert 150 < (b.x0 + b.x1) / 2 < 300 and 40 < (b.y0 + b.y1) / 2 < 180 and 60 < b.width < 200


def test_folder_of_clip_folders(tmp_path, faces64):
    for clip in ("001", "002"):
        d = tmp_path / clip / "frames"
        d.mkdir(parents=True)
        for i, (img, _) in enumerate(faces64[:3]):
            img.save(d / f"{i + 1:06d}.png")
        (tmp_path / clip / "annot").mkdir()
    fs = load_videos([str(tmp_path)], 32, 1.0, WeakConfig(frames_per_video=2))
    assert len(fs) == 4 and fs.groups.tolist() == [0, 0, 1, 1]
    assert fs.names[0].startswith("001/frames")
