"""Shared fixtures: tiny generated face sets, a tiny model config, and the optional shared real data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from sht.config import Config, load_config

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SHT_SHARED", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"

torch.set_num_threads(1)


def needs_shared(*parts: str) -> pytest.MarkDecorator:
    """Skip unless ``../shared/<parts>`` exists (real data is only on the developers' machines)."""
    path = SHARED.joinpath(*parts)
    return pytest.mark.skipif(not path.exists(), reason=f"shared real data not available: {path} is absent")


TINY = [
    "model.input_size=16",
    "model.num_stacks=2",
    "model.channels=16",
    "model.depth=2",
    "model.sr_channels=8",
    "model.sr_blocks=1",
    "model.face_size=32",
    "heatmap.sigma=1.0",
    "data.lr_sizes=[8,16]",
    "data.cache_dir=",
    "train.batch_size=8",
    "train.lr=0.002",
    "train.warmup_steps=5",
    "train.log_every=5",
    "train.eval_every=1000",
    "train.checkpoint_every=1000",
    "train.progress=false",
    "train.tensorboard=false",
    "train.threads=1",
]

# a tiny JASRNet on top of TINY: 64 px faces (8 x 8 heatmaps), C = 8, one deep block
TINY_JASRNET = ["model.arch=jasrnet", "model.face_size=64", "model.jasr_channels=8", "model.jasr_blocks=1"]


# a tiny FPTN and discriminators, on the tiny config's own face size
FPTN_TINY = [
    "fptn.channels=8",
    "fptn.max_channels=16",
    "fptn.blocks=2",
    "fptn.disc_channels=8",
    "fptn.disc_layers=2",
    "fptn.face_size=0",
]


def tiny_config(*overrides: str) -> Config:
    """A model small enough to train for a few steps in a second (32 px faces, 16 px input)."""
    return load_config("small", TINY + list(overrides))


@pytest.fixture(scope="session")
def synth_faces():
    """64 generated faces as a cached FaceSet at 32 px (context 1.5)."""
    from sht.data.dataset import load_source

    return load_source("synthetic:64:3", 32, 1.3, 1.5)


@pytest.fixture(scope="session")
def synth_folder(tmp_path_factory):
    """A folder of 12 generated 128 px faces with .pts beside them."""
    from sht.data.synthetic import SyntheticFaceConfig, write_folder

    d = tmp_path_factory.mktemp("synth")
    write_folder(d, 12, seed=5, cfg=SyntheticFaceConfig(image_size=128))
    return d
