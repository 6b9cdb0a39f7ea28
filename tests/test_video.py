"""Video: the frame reader, the landmark tracker (``Detector.track``), the One-Euro smoother and ``sht detect VIDEO``.

Every clip is made here from generated faces (:mod:`sht.data.synthetic`) pasted on a plain frame and moved, and
encoded with imageio-ffmpeg; the model is the release one shipped in the package.
"""

from __future__ import annotations

import csv
import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from sht.data.formats import DataError
from sht.data.synthetic import SyntheticFaceConfig, generate
from sht.data.transforms import CropBox
from sht.video import OneEuroConfig, OneEuroFilter, Track, TrackConfig, VideoReader, crop_shift, iou

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")

W, H = 200, 120


@pytest.fixture(scope="module")
def det():
    """The release landmark model with the Haar cascade as face detector: these tests are about tracking, on
    generated faces, which Haar finds wherever they are pasted; sht's own detector is trained on real faces and
    tested on them (test_face_detector.py, benchmarks/face_detection.py)."""
    import sht

    return sht.Detector(face_detector="haar")


@pytest.fixture(scope="module")
def faces():
    """Two generated 64 px faces that OpenCV's Haar cascade finds wherever they are pasted on the test frame."""
    found = generate(10, seed=3, cfg=SyntheticFaceConfig(image_size=64))
    return found[3], found[7]


@pytest.fixture(scope="module")
def face(faces):
    return faces[0]


def scene(face, positions, size=(W, H)):
    """Frames with the generated face pasted at each ``(x, y)`` (None: no face) and its true landmarks."""
    img, pts = face
    frames, truth = [], []
    for pos in positions:
        bg = Image.new("RGB", size, (70, 80, 90))
        if pos is not None:
            bg.paste(img, pos)
        frames.append(bg)
        truth.append(None if pos is None else pts + pos)
    return frames, truth


def write_mp4(path, frames, fps=25, **kw):
    w = imageio_ffmpeg.write_frames(str(path), frames[0].size, fps=fps, macro_block_size=1, **kw)
    w.send(None)
    for f in frames:
        w.send(np.ascontiguousarray(np.asarray(f)))
    w.close()
    return path


def moving(n, x0=40, dx=3, y=30):
    return [(x0 + dx * t, y) for t in range(n)]


# --- One-Euro filter ---------------------------------------------------------------------------------------------


def test_one_euro_keeps_a_constant_signal():
    f = OneEuroFilter(OneEuroConfig())
    x = np.array([[3.5, -2.0], [10.0, 7.25]])
    for t in range(50):
        np.testing.assert_allclose(f(x, t / 30), x)


def test_one_euro_reduces_noise_variance_and_follows_a_step():
    rng = np.random.default_rng(0)
    ts = np.arange(300) / 30
    noisy = rng.normal(0, 1.0, (300, 68, 2))
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0))
    out = np.array([f(x, t) for x, t in zip(noisy, ts, strict=True)])
    assert out[30:].var() < 0.25 * noisy[30:].var()
    # a step of 10 px at t = 1 s: reached within half a second, without overshoot
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=5.0))
    sig = np.where(ts < 1, 0.0, 10.0)
    out = np.array([f(np.array([s]), t, scale=20.0)[0] for s, t in zip(sig, ts, strict=True)])
    assert out[ts < 1].max() == 0.0
    assert out[(ts >= 1.5)].min() > 9.5 and out.max() <= 10.0 + 1e-9
    assert np.all(np.diff(out) >= -1e-12)


def test_one_euro_uses_the_sample_times():
    """Variable frame rate: the same change smooths less over a longer gap; a repeated time changes nothing."""
    a, b = OneEuroFilter(OneEuroConfig(beta=0.0)), OneEuroFilter(OneEuroConfig(beta=0.0))
    a(np.zeros(1), 0.0)
    b(np.zeros(1), 0.0)
    assert a(np.ones(1), 0.5)[0] > b(np.ones(1), 0.04)[0] > 0
    assert b(np.full(1, 5.0), 0.04)[0] == pytest.approx(b(np.ones(1), 0.04)[0])
    with pytest.raises(ValueError, match="unknown smoothing parameter"):
        OneEuroConfig.parse("gamma=1")
    assert OneEuroConfig.parse("beta=2, min_cutoff=0.5") == OneEuroConfig(min_cutoff=0.5, beta=2.0)


# --- reading -----------------------------------------------------------------------------------------------------


def test_reader_streams_frames_with_container_times(tmp_path, face):
    frames, _ = scene(face, moving(6))
    r = VideoReader(write_mp4(tmp_path / "c.mp4", frames, fps=10))
    assert (r.info.width, r.info.height, r.info.fps, r.info.frames) == (W, H, 10.0, 6)
    assert r.info.timestamps == "container" and not r.info.variable_frame_rate
    got = list(r)
    assert [f.index for f in got] == list(range(6))
    np.testing.assert_allclose([f.time for f in got], np.arange(6) / 10, atol=1e-6)
    assert got[0].image.size == (W, H) and got[0].image.mode == "RGB"
    assert r.problems == []


def make_vfr(tmp_path, face):
    """12 frames: 6 at 10 fps, then 6 at 1/0.3 fps (presentation times 0 .. 0.5, 0.6, 0.9, ..., 2.1)."""
    frames, _ = scene(face, moving(12))
    cfr = write_mp4(tmp_path / "cfr.mp4", frames, fps=10)
    out = tmp_path / "vfr.mp4"
    expr = "setpts='if(lt(N,6),N*0.1,0.6+(N-6)*0.3)/TB'"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(cfr), "-vf", expr, "-fps_mode", "vfr"]
    subprocess.run([*cmd, "-c:v", "libx264", str(out)], check=True)
    return out, np.r_[np.arange(6) * 0.1, 0.6 + np.arange(6) * 0.3]


def test_reader_variable_frame_rate(tmp_path, face):
    path, times = make_vfr(tmp_path, face)
    r = VideoReader(path)
    got = list(r)
    assert r.info.variable_frame_rate and r.info.frames == 12
    assert len(got) == 12  # each coded frame once (no duplicates to a constant rate)
    np.testing.assert_allclose([f.time for f in got], times, atol=1e-3)


def test_reader_refuses_what_is_not_a_video(tmp_path):
    with pytest.raises(DataError, match="not found"):
        VideoReader(tmp_path / "none.mp4")
    (tmp_path / "bad.mp4").write_bytes(b"not a video at all")
    with pytest.raises(DataError, match="cannot read video"):
        VideoReader(tmp_path / "bad.mp4")


# --- tracking ----------------------------------------------------------------------------------------------------


def test_iou_of_crops():
    from sht.data.transforms import CropBox

    assert iou(CropBox(0, 0, 10), CropBox(0, 0, 10)) == pytest.approx(1.0)
    assert iou(CropBox(0, 0, 10), CropBox(5, 0, 10)) == pytest.approx(50 / 150)
    assert iou(CropBox(0, 0, 10), CropBox(20, 20, 10)) == 0.0


def test_tracking_keeps_one_id_on_a_moving_face_with_few_detector_calls(det, face):
    frames, truth = scene(face, moving(24))
    track = det.track(frames, fps=25)
    results = list(track)
    assert [r.index for r in results] == list(range(24))
    seen = [r for r in results if r.faces]
    assert len(seen) == 24
    assert all([f.id for f in r.faces] == [0] for r in seen)
    assert all(r.faces[0].status in ("detected", "tracked") for r in seen)
    # the face detector runs on the first frame and every detect_every (8) frames after it; there its box lies on
    # the tracked crop and confirms the track, so every frame but the first is tracked
    assert seen[0].faces[0].status == "detected"
    assert all(r.faces[0].status == "tracked" for r in seen[1:])
    assert [r.index for r in results if r.detected] == [0, 8, 16]
    err = [np.abs(r.faces[0].landmarks - truth[r.index]).mean() for r in seen]
    assert max(err) < 2.0, err  # pixels, on a face whose landmark box is ~28 px
    assert track.stats["detector_calls"] == 3 and track.stats["confirmed_detections"] == 2
    assert track.stats["moved_to_detection"] == 0
    assert track.summaries[0].segments == [[seen[0].index, 23]] and track.summaries[0].lost_at == []
    # per-frame detection (photo mode on every frame) calls the face detector 24 times, misses the face where the
    # face detector does, and agrees with the tracked landmarks within a pixel where it finds it
    per_frame = det.detect_many(frames)
    found = [t for t, p in enumerate(per_frame) if p]
    assert len(found) <= len(seen)
    diff = [np.abs(per_frame[t][0].landmarks - results[t].faces[0].landmarks).mean() for t in found]
    assert found and np.mean(diff) < 1.0, diff


def test_a_detection_frame_confirms_a_track_or_moves_it_to_the_detected_face():
    """``Track._arbitrate``: a challenger (a detector box's face) against the track its box overlaps."""
    from sht.data.transforms import CropBox

    track = Track(None, [], TrackConfig())  # type: ignore[arg-type]
    face, near, away = CropBox(10, 10, 30), CropBox(12, 11, 30), CropBox(30, 10, 30)
    pairs = [(0, 0), (-1, 0)]  # row 0: tracked id 0; row 1: the challenger of id 0

    def arbitrate(track_box, track_reason, box, reason, scores=(0.8, 0.7)):
        track._moved.clear()
        track._refreshed.clear()
        boxes, reasons = {0: track_box, 1: box}, {0: track_reason, 1: reason}
        got = track._arbitrate({-1: 0}, pairs, [0, 1], boxes, reasons, dict(enumerate(scores)))
        return got, set(track._moved)

    # the same face (IoU above duplicate_iou): the track goes on, the challenger is not reported ...
    assert arbitrate(face, None, near, None) == (({1}, {}), set()) and not track._refreshed
    # ... unless the challenger's landmarks score higher: its prediction replaces the track's on this frame
    assert arbitrate(face, None, near, None, (0.7, 0.8)) == (({0}, {1: 0}), set()) and track._refreshed == {0}
    # the track slid off the face: it is moved to the challenger's face, keeping its id
    assert arbitrate(away, None, face, None) == (({0}, {1: 0}), {0})
    # the track is lost on this frame: the challenger takes its id over
    assert arbitrate(face, "landmark score 0.41 < 0.6", near, None) == (({0}, {1: 0}), {0})
    # the challenger's landmarks fail the lost rule: a rejected detection, the track stands
    before = track.stats["rejected_detections"]
    assert arbitrate(away, None, face, "landmark score 0.30 < 0.6") == (({1}, {}), set())
    assert track.stats["rejected_detections"] == before + 1


def test_a_track_pushed_off_the_face_is_back_on_it_after_the_next_detection(det, face):
    frames, truth = scene(face, moving(12))
    track = det.track(frames, TrackConfig(detect_every=4), fps=25)
    it = iter(track)
    before = [next(it) for _ in range(4)]  # frames 0-3; the face detector runs again on frame 4
    assert [r.detected for r in before] == [True, False, False, False]
    st = track._active[0]
    # the track drifts: its crop slides 0.6 of its side to the right, still overlapping the face, with a bogus
    # velocity
    st.crop = type(st.crop)(st.crop.x0 + 0.6 * st.crop.side, st.crop.y0, st.crop.side)
    st.velocity = (8.0, 0.0)
    after = list(it)
    assert after[0].index == 4 and after[0].detected
    assert all([f.id for f in r.faces] == [0] for r in before + after)  # the same id throughout
    assert track.summaries[0].segments == [[0, 11]] and track.summaries[0].lost_at == []
    err = [np.abs(r.faces[0].landmarks - truth[r.index]).mean() for r in after]
    assert max(err) < 2.0, err
    assert track.summaries[0].moved_at in ([], [4])


def test_crop_shift_is_in_units_of_the_reference_side():
    ref = CropBox(10, 20, 50)
    assert crop_shift(ref, ref) == 0
    assert crop_shift(CropBox(12, 20, 50), ref) == pytest.approx(0.04)
    assert crop_shift(CropBox(10, 17, 50), ref) == pytest.approx(0.06)
    assert crop_shift(CropBox(5, 15, 60), ref) == pytest.approx(0.2)  # same centre, side 1.2x


def test_settle_skips_the_second_pass_where_the_crop_stays_on_the_face(det, face):
    frames, _ = scene(face, moving(16, dx=1))
    runs = {}
    for name, settle in (("off", None), ("zero", 0.0), ("default", TrackConfig().settle)):
        track = det.track(frames, TrackConfig(settle=settle), fps=25)
        runs[name] = (list(track), track.stats)
    assert runs["default"][1]["crops"] < runs["off"][1]["crops"]
    assert runs["zero"][1]["crops"] == runs["off"][1]["crops"]  # every crop moves a little: always predicted again
    a, b = runs["default"][0], runs["off"][0]
    assert [len(r.faces) for r in a] == [1] * 16 == [len(r.faces) for r in b]
    diff = [np.abs(x.faces[0].landmarks - y.faces[0].landmarks).mean() for x, y in zip(a, b, strict=True)]
    assert np.mean(diff) < 0.5, diff  # pixels, on a ~28 px landmark box


def test_tracking_without_faces_gives_the_same_landmarks_and_no_face(det, face):
    """``TrackConfig(faces=False)`` (``sht detect VIDEO`` without --save-faces / --save-face-video) skips the work
    that only makes the hallucinated face; the landmarks are those of the default run. Photo mode likewise."""
    frames, _ = scene(face, moving(10))
    with_faces = list(det.track(frames, fps=25))
    without = list(det.track(frames, TrackConfig(faces=False), fps=25))
    assert [len(r.faces) for r in without] == [len(r.faces) for r in with_faces] == [1] * 10
    for a, b in zip(with_faces, without, strict=True):
        assert a.faces[0].face is not None and a.faces[0].face.size == (128, 128)
        assert b.faces[0].face is None
        np.testing.assert_allclose(b.faces[0].landmarks, a.faces[0].landmarks, atol=1e-3)
    full, lm_only = det.detect(frames[0]), det.detect(frames[0], face=False)
    assert len(full) == len(lm_only) == 1 and full[0].face is not None and lm_only[0].face is None
    np.testing.assert_allclose(lm_only[0].landmarks, full[0].landmarks, atol=1e-3)


def test_a_face_leaving_the_frame_is_reported_lost(det, face):
    # the face slides out to the right: 10 px per frame from x = 60 (the frame is 200 px wide)
    frames, _ = scene(face, [(60 + 10 * t, 30) for t in range(16)])
    track = det.track(frames, fps=25)
    results = list(track)
    lost = [(r.index, f) for r in results for f in r.faces if f.status == "lost"]
    assert len(lost) == 1, [(r.index, [(f.id, f.status) for f in r.faces]) for r in results]
    at, f = lost[0]
    assert f.id == 0 and f.landmarks is None and f.reason
    assert track.summaries[0].lost_at == [at] and track.summaries[0].segments[0][1] == at - 1
    # after the loss the face detector looks on every frame and finds nothing
    after = results[at + 1 :]
    assert after and all(r.detected and r.faces == [] for r in after)
    # before it, the face was tracked with its landmarks mostly inside the frame
    for r in results[:at]:
        for g in r.faces:
            assert np.mean(g.landmarks[:, 0] <= W) >= 0.5


def test_a_face_that_comes_back_keeps_its_id_and_a_new_face_gets_a_new_one(det, face, faces):
    img = faces[1][0]
    pos = moving(6, dx=1) + [None] * 3 + moving(6, x0=46, dx=1)
    frames, _ = scene(face, pos)
    # a second face appears far from the first on frame 12 (found by the periodic detection)
    for t in range(12, 15):
        frames[t].paste(img, (130, 40))
    track = det.track(frames, TrackConfig(detect_every=4), fps=25)
    results = list(track)
    ids = [sorted(f.id for f in r.faces if f.status != "lost") for r in results]
    statuses = {r.index: {f.id: f.status for f in r.faces} for r in results}
    assert 0 in ids[1] and all(ids[t] == [] for t in (7, 8))  # the face is gone on the blank frames
    assert statuses[6].get(0) == "lost"  # ... and reported lost on the first one
    assert all(0 in ids[t] for t in range(10, 15))  # the same id when it is back
    assert all(ids[t] == [0, 1] for t in range(13, 15))  # the other face is id 1
    assert track.summaries[0].lost_at == [6] and len(track.summaries[0].segments) == 2


def test_the_lost_rule():
    cfg = TrackConfig()
    from sht.data.transforms import CropBox

    pts = np.stack(np.meshgrid(np.linspace(40, 60, 17), np.linspace(40, 60, 4)), -1).reshape(-1, 2)[:68]
    ok = np.full(68, 0.8)
    crop = CropBox(37, 37, 26)
    assert cfg.lost_reason(pts, ok, crop, 26, (100, 100)) is None
    assert "score" in cfg.lost_reason(pts, np.full(68, 0.5), crop, 26, (100, 100))
    assert "inside the frame" in cfg.lost_reason(pts + [55, 0], ok, crop, 26, (100, 100))
    assert "size changed" in cfg.lost_reason(pts, ok, crop, 13, (100, 100))
    assert "smaller" in cfg.lost_reason(pts, ok, CropBox(0, 0, 3), 3, (100, 100))
    assert "smaller" in cfg.lost_reason(pts, ok, None, 26, (100, 100))


# --- sht detect VIDEO ----------------------------------------------------------------------------------------------


def test_detect_video_acceptance(tmp_path, face, capsys):
    """``sht detect clip.mp4 --out clip.json --save-overlay clip.mp4`` on a generated clip, plus CSV, the face
    video and smoothing; the JSON and CSV agree."""
    from sht.cli import main

    frames, truth = scene(face, moving(12))
    clip = write_mp4(tmp_path / "clip.mp4", frames)
    out = tmp_path / "out"
    rc = main(
        [
            "detect",
            str(clip),
            "--out",
            str(out / "clip.json"),
            "--save-overlay",
            str(out / "clip.mp4"),
            "--csv",
            str(out / "clip.csv"),
            "--save-face-video",
            str(out / "face.mp4"),
            "--smooth",
        ]
    )
    assert rc == 0
    assert "12 frame(s), 1 face id(s)" in capsys.readouterr().out
    doc = json.loads((out / "clip.json").read_text())
    assert doc["complete"] is True and doc["mode"] == "video" and doc["video"]["frames"] == 12
    assert [f["frame"] for f in doc["frames"]] == list(range(12))
    np.testing.assert_allclose([f["time"] for f in doc["frames"]], np.arange(12) / 25, atol=1e-6)
    faces = [(fr["frame"], f) for fr in doc["frames"] for f in fr["faces"]]
    assert len(faces) >= 11 and {f["id"] for _, f in faces} == {0}
    for t, f in faces:
        lm = np.array(f["landmarks"])
        assert lm.shape == (68, 2) and np.abs(lm - truth[t]).mean() < 2.5
        assert np.array(f["landmarks_smoothed"]).shape == (68, 2) and 0.6 <= f["score"] <= 1
    # overlay: one frame per video frame; face video: LR | hallucinated from the face's first frame
    ov = VideoReader(out / "clip.mp4")
    assert ov.info.frames == 12 and ov.info.width >= W
    fv = VideoReader(out / "face.mp4")
    assert fv.info.frames == 12 - faces[0][0] and (fv.info.width, fv.info.height) == (260, 128)
    # the CSV holds the same faces and points as the JSON; the smoothed CSV the smoothed points
    rows = list(csv.DictReader((out / "clip.csv").open()))
    smooth_rows = list(csv.DictReader((out / "clip_smoothed.csv").open()))
    assert len(rows) == len(smooth_rows) == len(faces)
    for row, srow, (t, f) in zip(rows, smooth_rows, faces, strict=True):
        assert (int(row["frame"]), int(row["face_id"]), row["status"]) == (t, f["id"], f["status"])
        pts = np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(68)])
        np.testing.assert_allclose(pts, f["landmarks"], atol=1e-3)
        spts = np.array([[float(srow[f"x_{i}"]), float(srow[f"y_{i}"])] for i in range(68)])
        np.testing.assert_allclose(spts, f["landmarks_smoothed"], atol=1e-3)
        np.testing.assert_allclose([float(row[k]) for k in ("box_x0", "box_y0", "box_x1", "box_y1")], f["box"])
        assert float(row["score"]) == pytest.approx(f["score"]) and float(row["time"]) == pytest.approx(
            doc["frames"][t]["time"]
        )
    assert not list(out.glob(".*part*"))  # no temporary file left


def test_detect_video_bad_inputs(tmp_path, face, capsys):
    from sht.cli import main

    out = tmp_path / "o.json"
    # corrupt: one line, no JSON
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x01garbage" * 100)
    assert main(["detect", str(tmp_path / "bad.mp4"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.mp4" in err[0] and "cannot read video" in err[0]
    assert not out.exists()
    # truncated without its index (moov at the end): the same
    frames, _ = scene(face, moving(10))
    full = write_mp4(tmp_path / "full.mp4", frames).read_bytes()
    (tmp_path / "cut.mp4").write_bytes(full[: len(full) // 2])
    assert main(["detect", str(tmp_path / "cut.mp4"), "--out", str(out)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and not out.exists()
    # truncated with the index first (faststart): the frames that decode, a warning, a valid JSON
    rng = np.random.default_rng(0)
    noisy = [
        Image.fromarray(np.clip(np.asarray(f) + rng.normal(0, 8, (H, W, 3)), 0, 255).astype(np.uint8)) for f in frames
    ]
    fast = write_mp4(tmp_path / "fast.mp4", noisy, output_params=["-movflags", "+faststart"]).read_bytes()
    (tmp_path / "cutfast.mp4").write_bytes(fast[: len(fast) * 2 // 3])
    assert main(["detect", str(tmp_path / "cutfast.mp4"), "--out", str(out)]) == 0
    cap = capsys.readouterr()
    doc = json.loads(out.read_text())
    assert doc["complete"] and 0 < len(doc["frames"]) < 10 and doc["problems"]
    assert "warning" in cap.err and "truncated" in cap.err
    # no face: every frame is reported with no faces
    blank, _ = scene(face, [None] * 5)
    assert main(["detect", str(write_mp4(tmp_path / "blank.mp4", blank)), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert "no face found" in capsys.readouterr().out
    assert doc["complete"] and len(doc["frames"]) == 5 and all(f["faces"] == [] for f in doc["frames"])
    assert doc["stats"]["detector_calls"] == 5 and doc["tracks"] == {}
    # a single frame
    one, _ = scene(face, [(60, 30)])
    assert (
        main(
            ["detect", str(write_mp4(tmp_path / "one.mp4", one)), "--out", str(out), "--csv", str(tmp_path / "o.csv")]
            + ["--find-faces", "haar"]
        )
        == 0
    )
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == 1 and doc["frames"][0]["faces"][0]["status"] == "detected"
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 2
    # variable frame rate: the container's times
    vfr, times = make_vfr(tmp_path, face)
    assert main(["detect", str(vfr), "--out", str(out), "--find-faces", "haar"]) == 0
    doc = json.loads(out.read_text())
    assert doc["video"]["variable_frame_rate"]
    np.testing.assert_allclose([f["time"] for f in doc["frames"]], times, atol=1e-3)
    # usage errors
    assert main(["detect", str(vfr), str(vfr), "--out", str(out)]) == 2
    assert "one video per run" in capsys.readouterr().err
    assert main(["detect", str(vfr), "--out", str(out), "--smooth", "gamma=2"]) == 2
    assert "unknown smoothing parameter" in capsys.readouterr().err
    for bad, msg in (("abc", "--settle: a number or off"), ("-1", "settle must be None or >= 0")):
        assert main(["detect", str(vfr), "--out", str(out), "--settle", bad]) == 2
        assert msg in capsys.readouterr().err


def test_detect_video_interrupted_writes_what_is_done(tmp_path, face, monkeypatch, capsys):
    """Ctrl-C after 4 frames: the JSON and CSV hold those 4 frames and say ``complete: false``."""
    import sht.video
    from sht.cli import main

    frames, _ = scene(face, moving(10))
    clip = write_mp4(tmp_path / "clip.mp4", frames)
    real = sht.video.Track.__iter__

    def interrupted(self):
        for i, res in enumerate(real(self)):
            if i == 4:
                raise KeyboardInterrupt
            yield res

    monkeypatch.setattr(sht.video.Track, "__iter__", interrupted)
    out = tmp_path / "o.json"
    rc = main(["detect", str(clip), "--out", str(out), "--csv", str(tmp_path / "o.csv")])
    assert rc == 130 and "interrupted" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    assert doc["complete"] is False and doc["interrupted"] is True and len(doc["frames"]) == 4
    assert len((tmp_path / "o.csv").read_text().splitlines()) == 1 + sum(len(f["faces"]) for f in doc["frames"])


@pytest.mark.slow
def test_detect_video_4k(tmp_path, face, capsys):
    """A 4K clip (two frames) gives a valid result: the frames are streamed, the face is found and tracked."""
    from sht.cli import main

    img, pts = face
    big = img.resize((256, 256), Image.Resampling.BICUBIC)
    frames, _ = scene((big, pts * 4), [(1500, 900), (1510, 900)], size=(3840, 2160))
    clip = write_mp4(tmp_path / "4k.mp4", frames)
    out = tmp_path / "4k.json"
    assert main(["detect", str(clip), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["complete"] and (doc["video"]["width"], doc["video"]["height"]) == (3840, 2160)
    assert [len(f["faces"]) for f in doc["frames"]] == [1, 1]
    lm = np.array(doc["frames"][1]["faces"][0]["landmarks"])
    assert np.abs(lm - (pts * 4 + [1510, 900])).mean() < 8  # px on a face whose landmark box is ~110 px


def test_detect_video_with_a_box_on_the_first_frame(tmp_path, det, face, capsys):
    """``--box`` replaces the face detector on the first frame (the same landmarks as photo mode with that box);
    the face is then tracked without it."""
    from sht.cli import main
    from sht.data.transforms import canonical_box
    from sht.faces import face_detector_calibration

    cal = face_detector_calibration(det.face_detector_name)  # a given box is read as that detector's box

    frames, truth = scene(face, moving(5))
    # the box a face detector would give for this face: the inverse of its calibration to the canonical crop
    c = canonical_box(truth[0], 1.3)
    w = c.side / cal.scale
    bx, by = c.x0 + c.side / 2 - cal.dx * w, c.y0 + c.side / 2 - cal.dy * w
    x0, y0, x1, y1 = bx - w / 2, by - w / 2, bx + w / 2, by + w / 2
    clip = write_mp4(tmp_path / "clip.mp4", frames)
    out = tmp_path / "o.json"
    args = ["detect", str(clip), "--out", str(out), "--box", f"{x0},{y0},{x1},{y1}"]
    assert main([*args, "--find-faces", det.face_detector_name]) == 0
    doc = json.loads(out.read_text())
    assert doc["face_detector"].startswith("given boxes") and doc["stats"]["detector_calls"] == 0
    assert [[f["status"] for f in fr["faces"]] for fr in doc["frames"]] == [["detected"]] + [["tracked"]] * 4
    first = next(iter(VideoReader(clip))).image
    photo = det.detect(first, [(x0, y0, x1, y1)])[0].landmarks
    np.testing.assert_allclose(doc["frames"][0]["faces"][0]["landmarks"], photo, atol=2e-3)
    for fr in doc["frames"]:
        assert np.abs(np.array(fr["faces"][0]["landmarks"]) - truth[fr["frame"]]).mean() < 4
