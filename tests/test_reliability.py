"""Interrupted training, diverging losses and fuzzed inputs: nothing is lost and every refusal is explained."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from conftest import TINY, tiny_config
from sht.config import ConfigError, load_config
from sht.data.formats import IBUG68, DataError, parse_pts
from sht.data.transforms import compose_affine, warp_points
from sht.errors import TrainingDiverged
from sht.train import SupervisedStage, Trainer

ROOT = Path(__file__).resolve().parents[1]


def _train_cmd(out: Path, steps: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sht.cli",
        "train",
        "small",
        *TINY,
        "data.train=[synthetic:48:2]",
        f"train.steps={steps}",
        "train.checkpoint_every=4",
        "--out",
        str(out),
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path):
    """A run killed with SIGKILL and started again ends with exactly the weights of an uninterrupted run."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_cmd(straight, 30), check=True, env=_env(), capture_output=True, timeout=300)
    proc = subprocess.Popen(_train_cmd(killed, 30), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    side = killed / "checkpoints" / "last.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        if side.exists():
            try:
                if json.loads(side.read_text())["step"] >= 12:
                    break
            except (json.JSONDecodeError, KeyError):
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = json.loads(side.read_text())["step"]
    assert 12 <= step < 30, f"the run was not killed mid-way (checkpoint at step {step})"
    subprocess.run(_train_cmd(killed, 30), check=True, env=_env(), capture_output=True, timeout=300)
    a = load_file(str(straight / "checkpoints" / "last.safetensors"))
    b = load_file(str(killed / "checkpoints" / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:5]
    assert not list((killed / "checkpoints").glob(".*tmp*")), "a temporary checkpoint file was left behind"


def test_sigterm_saves_a_checkpoint_and_exits(tmp_path):
    proc = subprocess.Popen(
        _train_cmd(tmp_path, 100000), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    side = tmp_path / "metrics.csv"
    deadline = time.time() + 120
    while time.time() < deadline and not (side.exists() and side.read_text().count("train/total") >= 2):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert "SIGTERM received: saved" in err
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["step"] >= 10


def test_diverging_loss_is_skipped_then_stops_with_the_last_good_checkpoint(synth_faces, tmp_path):
    cfg = tiny_config("train.steps=40", "train.checkpoint_every=3", "train.max_nonfinite=4")
    stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    real_step = stage.train_step

    def poisoned(step: int):
        if step >= 5:  # from step 5 on the face output explodes
            with torch.no_grad():
                stage.model.sr_tail.body[-1].bias.fill_(float("nan"))
        return real_step(step)

    stage.train_step = poisoned
    with pytest.raises(TrainingDiverged, match=r"DHLN loss \(heatmap.*\) was not finite for 4 consecutive steps"):
        Trainer(cfg, stage, tmp_path).fit()
    good = load_file(str(tmp_path / "checkpoints" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for v in good.values())
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["step"] == 3
    log = (tmp_path / "metrics.csv").read_text()
    assert log.count("train/skipped_nonfinite") == 4


def test_a_single_bad_step_is_skipped_and_training_goes_on(synth_faces, tmp_path):
    cfg = tiny_config("train.steps=8")
    stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=synth_faces)
    real_step = stage.train_step

    def once(step: int):
        if step == 3:
            b = stage.builder.build
            stage.builder.build = lambda *a, **k: _nan_input(b(*a, **k))
            try:
                return real_step(step)
            finally:
                stage.builder.build = b
        return real_step(step)

    stage.train_step = once
    Trainer(cfg, stage, tmp_path).fit()
    assert json.loads((tmp_path / "checkpoints" / "last.json").read_text())["step"] == 8
    weights = load_file(str(tmp_path / "checkpoints" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())  # BatchNorm statistics were restored too


def _nan_input(batch):
    batch.input[0, 0, 0, 0] = float("nan")
    return batch


# --- fuzzing -------------------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_pts_parser_never_crashes_on_random_bytes(data):
    try:
        parse_pts(data.decode("utf-8", errors="replace"), "fuzz.pts", 68)
    except DataError:
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "version: 1",
                "n_points: 68",
                "n_points: x",
                "{",
                "}",
                "1 2",
                "1.5 nan",
                "3",
                "a b",
                "1e400 2",
                "-0 +1",
                "",
                "1,2",
                "# c",
            ]
        ),
        max_size=80,
    )
)
def test_pts_parser_near_valid_files(lines):
    try:
        pts = parse_pts("\n".join(lines), "fuzz.pts")
        assert np.all(np.isfinite(pts))
    except DataError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["train", "model", "data", "loss", "sht", "preset", "junk"]),
        st.one_of(
            st.integers(),
            st.text(max_size=5),
            st.none(),
            st.lists(st.integers(), max_size=3),
            st.dictionaries(
                st.sampled_from(["steps", "lr", "streams", "x", "lr_sizes"]),
                st.one_of(st.integers(), st.text(max_size=4), st.floats()),
            ),
        ),
    )
)
def test_config_loader_only_raises_config_error(tree):
    from sht.config import build_config

    try:
        build_config(tree)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_override_parser_only_raises_config_error(text):
    try:
        load_config("small", [text])
    except ConfigError:
        pass


@settings(max_examples=60, deadline=None)
@given(st.floats(-30, 30), st.floats(0.8, 1.2), st.floats(-5, 5), st.floats(-5, 5), st.booleans())
def test_geometric_round_trip(angle, scale, tx, ty, flip):
    """Landmarks mapped by a random rotation/scale/shift/flip and by its inverse come back, including the
    mirror permutation of the 68 points."""
    pts = torch.rand(1, 68, 2, dtype=torch.float64) * 100 + 14
    flips = torch.tensor([flip])
    fwd = compose_affine(
        128, 128, torch.tensor([np.radians(angle)]), torch.tensor([scale]), torch.tensor([[tx, ty]]), flips
    ).double()
    out = warp_points(pts.clone(), fwd, flips, IBUG68)
    back = warp_points(out.clone(), torch.linalg.inv(fwd), flips, IBUG68)
    assert torch.allclose(back, pts, atol=1e-6)
    # distances are scaled by `scale`, so the shape is preserved
    d = (pts[0, :, None] - pts[0, None]).norm(dim=-1)
    d2 = (out[0, :, None] - out[0, None]).norm(dim=-1)
    perm = torch.as_tensor(IBUG68.flip) if flip else torch.arange(68)
    assert torch.allclose(d2, scale * d[perm][:, perm], atol=1e-6)
