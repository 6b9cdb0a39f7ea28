"""Fail fast: ``sht train`` and ``sht recipe`` refuse, before any data is loaded or any network built, a run that
would stop later (issue 11's late failures), with one line naming the missing piece."""

from __future__ import annotations

import json

import pytest

from conftest import TINY
from sht.cli import main
from sht.config import config_to_dict, load_config

FPTN_TINY = ["fptn.channels=8", "fptn.max_channels=16", "fptn.blocks=1", "fptn.disc_channels=8", "fptn.disc_layers=1"]


@pytest.fixture
def no_training(monkeypatch):
    """Any attempt to load the labeled data or build a stage fails the test: refusals must come first."""

    def boom(*_a, **_k):
        raise AssertionError("training started before the checks refused the run")

    class Boom:
        name = "dhln"

        def __init__(self, *_a, **_k):
            boom()

    import sht.train as train_pkg
    import sht.train.recipe as recipe

    monkeypatch.setattr(recipe, "load_labeled", boom)
    monkeypatch.setattr(recipe, "SupervisedStage", Boom)
    monkeypatch.setattr(train_pkg, "SupervisedStage", Boom)


def run_cli(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return rc, err


def test_recipe_without_weak_data_stops_before_stage_1(tmp_path, capsys, no_training, vgg_npz):
    out = tmp_path / "out"
    rc, err = run_cli(
        ["recipe", "small", *TINY, "data.train=[synthetic:16]", f"fptn.vgg_weights={vgg_npz}", "--out", str(out)],
        capsys,
    )
    assert rc == 2 and len(err) == 1
    assert "stage 4 (weak) needs unlabeled data" in err[0] and "sht.weak.images" in err[0]
    assert not out.exists()


def test_paper_preset_without_vgg_weights_stops_before_stage_1(tmp_path, capsys, no_training):
    rc, err = run_cli(
        ["recipe", "paper", "data.train=[synthetic:16]", "--out", str(tmp_path), "--stages", "1", "2"], capsys
    )
    assert rc == 2 and len(err) == 1 and "fptn.vgg_weights" in err[0] and "empty" in err[0]


def test_missing_vgg_file_is_named(tmp_path, capsys, no_training):
    missing = tmp_path / "nope.npz"
    rc, err = run_cli(
        ["recipe", "small", "data.train=[synthetic:16]", f"fptn.vgg_weights={missing}", "--out", str(tmp_path)],
        capsys,
    )
    assert rc == 2 and str(missing) in err[0]


def test_stage_1_alone_needs_no_vgg_weights(tmp_path):
    from sht.train.preflight import preflight

    cfg = load_config("small", [*TINY, "data.train=[synthetic:16]"])
    preflight(cfg, {1: tmp_path / "1-dhln"}, [1], {1: 5})  # no error


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{tmp}/absent", "neither a folder"),
        ("{tmp}/empty", "no image with a .pts"),
        ("synthetic:0", "holds no faces"),
        ("300w:{tmp}/absent:train", "not found"),
    ],
)
def test_missing_or_empty_data_is_refused(tmp_path, capsys, no_training, source, message):
    (tmp_path / "empty").mkdir()
    src = source.format(tmp=tmp_path)
    rc, err = run_cli(["train", "small", *TINY, f"data.train=[{src}]", "--out", str(tmp_path / "run")], capsys)
    assert rc == 2 and len(err) == 1 and "data.train" in err[0] and message in err[0], err


def test_missing_validation_source_is_refused(tmp_path, capsys, no_training):
    rc, err = run_cli(
        ["train", "small", *TINY, "data.train=[synthetic:8]", f"data.val=[{tmp_path}/x]", "--out", str(tmp_path)],
        capsys,
    )
    assert rc == 2 and "data.val" in err[0]


def test_unwritable_output_folder_is_refused(tmp_path, capsys, no_training):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc, err = run_cli(["train", "small", *TINY, "data.train=[synthetic:8]", "--out", str(blocker / "run")], capsys)
    assert rc == 2 and "not writable" in err[0] and str(blocker / "run") in err[0]


def test_resume_with_another_model_config_is_refused(tmp_path, capsys, no_training):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    other = load_config("small", [*TINY, "model.channels=24"])
    doc = {"stage": "dhln", "step": 3, "config": config_to_dict(other)}
    (run / "checkpoints" / "last.json").write_text(json.dumps(doc))
    rc, err = run_cli(["train", "small", *TINY, "data.train=[synthetic:8]", "--out", str(run)], capsys)
    assert rc == 2 and "different model config" in err[0] and "model.channels" in err[0]


def test_resume_of_another_stage_is_refused(tmp_path, capsys, no_training):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = load_config("small", [*TINY])
    doc = {"stage": "fptn", "step": 3, "config": config_to_dict(cfg)}
    (run / "checkpoints" / "last.json").write_text(json.dumps(doc))
    rc, err = run_cli(["train", "small", *TINY, "data.train=[synthetic:8]", "--out", str(run)], capsys)
    assert rc == 2 and "'fptn' run" in err[0]


def test_later_stage_without_its_inputs_is_refused(tmp_path, capsys, no_training, vgg_npz):
    rc, err = run_cli(
        [
            "recipe",
            "small",
            *TINY,
            "data.train=[synthetic:8]",
            f"fptn.vgg_weights={vgg_npz}",
            "--out",
            str(tmp_path),
            "--stages",
            "3",
        ],
        capsys,
    )
    assert rc == 2 and "stage 3 starts from stage 1" in err[0]


@pytest.fixture
def vgg_npz(tmp_path):
    import numpy as np

    path = tmp_path / "vgg.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path,
        **{
            "block1_conv1.weight": rng.normal(size=(64, 3, 3, 3)).astype(np.float32),
            "block1_conv1.bias": np.zeros(64, np.float32),
            "block1_conv2.weight": rng.normal(size=(64, 64, 3, 3)).astype(np.float32),
            "block1_conv2.bias": np.zeros(64, np.float32),
        },
    )
    return path


def test_semantic_alignment_runs_resume_under_their_own_stage_name(tmp_path):
    from sht.errors import CheckpointError
    from sht.train.preflight import preflight

    cfg = load_config("small", [*TINY, "data.train=[synthetic:8]"])
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    doc = {"stage": "sa", "step": 3, "config": config_to_dict(cfg)}
    (run / "checkpoints" / "last.json").write_text(json.dumps(doc))
    preflight(cfg, {1: run}, [1], {1: 5}, {1: "sa"})  # accepted
    with pytest.raises(CheckpointError, match="'sa' run"):
        preflight(cfg, {1: run}, [1], {1: 5})
