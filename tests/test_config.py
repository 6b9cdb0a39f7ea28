from __future__ import annotations

import pytest

from sht.config import PRESETS, ConfigError, build_config, config_from_dict, config_to_dict, load_config


def test_presets_load_with_their_settings():
    paper = load_config("paper")
    assert (paper.model.num_stacks, paper.model.channels, paper.model.input_size, paper.model.face_size) == (
        4,
        256,
        64,
        128,
    )
    assert paper.model.sr_blocks == 4 and paper.model.sr_channels == 64
    assert (paper.loss.heatmap, paper.loss.pixel, paper.loss.gradient) == (1.0, 0.01, 0.01)
    assert load_config("paper-m").model.face_size == 256
    small = load_config("small")
    assert small.model.input_size == 32 and small.model.face_size == 128 and small.preset == "small"
    assert set(PRESETS) >= {"paper", "paper-m", "small"}


def test_yaml_preset_then_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("preset: small\ntrain:\n  steps: 77\nmodel:\n  streams: shn\n")
    cfg = load_config(f, ["train.lr=0.5", "data.lr_sizes=[16,32]"])
    assert cfg.train.steps == 77 and cfg.model.streams == "shn" and cfg.train.lr == 0.5
    assert cfg.data.lr_sizes == [16, 32]
    assert cfg.model.input_size == 32  # from the preset


def test_round_trip_through_dict():
    cfg = load_config("small", ["model.streams=fhs"])
    assert config_from_dict(config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.stepz=5", "train.stepz"),
        ("train.steps=many", "train.steps"),
        ("model.streams=both", "model.streams must be dhln, shn or fhs"),
        ("nonsense", "not of the form"),
        ("model.input_size=30", "divisible"),
    ],
)
def test_bad_overrides_are_one_clear_line(override, message):
    with pytest.raises(ConfigError) as err:
        load_config("small", [override])
    text = str(err.value)
    assert message in text and "\n" not in text


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(lst)
    with pytest.raises(ConfigError, match="unknown preset"):
        build_config({"preset": "huge"})


def test_sht_gradient_paths_paper_and_corrected():
    """The paper presets keep the literal reading of Eq. 5-9; the other presets the corrected gradient paths."""
    for name in ("paper", "paper-m"):
        s = load_config(name).sht
        paths = (s.detach_condition, s.real_heatmaps, s.fptn_heatmaps, s.add_unlabeled)
        assert paths == (False, "predicted", "raw", False)
        assert (s.lambda_gan, s.lambda_l1, s.lambda_perceptual) == (0.05, 0.01, 0.01)
        assert s.fptn_lambdas == [] and s.fptn_weights == s.dhln_weights and not s.freeze_fptn
        assert s.lambda_equivariance == 0
    small = load_config("small").sht
    assert (small.detach_condition, small.real_heatmaps, small.fptn_heatmaps) == (True, "truth", "rendered")
    assert small.add_unlabeled
    s = load_config("small", ["sht.fptn_lambdas=[0.01,1,1]"]).sht
    assert s.fptn_weights == (0.01, 1.0, 1.0) and s.dhln_weights == (s.lambda_gan, s.lambda_l1, s.lambda_perceptual)
    off = load_config("small", ["sht.lambda_gan=0", "sht.lambda_l1=0", "sht.lambda_perceptual=0"]).sht
    assert not off.uses_transfer
    for override, message in (
        ("sht.real_heatmaps=gt", "sht.real_heatmaps"),
        ("sht.fptn_heatmaps=soft", "sht.fptn_heatmaps"),
        ("sht.fptn_lambdas=[1,2]", "sht.fptn_lambdas"),
        ("sht.decode_radius=0", "sht.decode_radius"),
        ("sht.lambda_equivariance=-1", "lambda"),
        ("fptn.face_size=-64", "fptn.face_size"),
    ):
        with pytest.raises(ConfigError) as err:
            load_config("small", [override])
        assert message in str(err.value) and "\n" not in str(err.value)


def test_model_config_diff_takes_fields_a_run_does_not_record_at_their_default():
    from sht.config import ModelConfig, config_to_dict, model_config_diff

    cfg = load_config("small")
    saved, default = config_to_dict(cfg)["model"], config_to_dict(ModelConfig())
    assert model_config_diff(saved, cfg) == []
    same = next(k for k in saved if saved[k] == default[k])
    other = next(k for k in saved if saved[k] != default[k])
    # a run written before a field existed used its default: no difference where that is still the value
    assert model_config_diff({k: v for k, v in saved.items() if k != same}, cfg) == []
    assert model_config_diff({k: v for k, v in saved.items() if k != other}, cfg) == [other]
    assert model_config_diff({**saved, "channels": saved["channels"] + 1}, cfg) == ["channels"]
    assert model_config_diff(None, cfg) == []
