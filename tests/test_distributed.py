"""DistributedDataParallel under torchrun with 2 CPU processes (gloo): both ranks end with identical weights and
the loss falls; the GAN stage's several optimisers are synchronised too."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from conftest import TINY

SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from sht.config import load_config
    from sht.data.dataset import load_source
    from sht.train import FPTNStage, SupervisedStage, Trainer
    from sht.train.distributed import cleanup, setup

    out, stage_name, *overrides = sys.argv[1:]
    torch.set_num_threads(1)
    cfg = load_config("small", overrides)
    info = setup(torch.device("cpu"))
    torch.manual_seed(100 + info.rank)  # different on purpose: DDP must make the ranks agree
    faces = load_source("synthetic:48:2", 32, 1.3, 1.5)
    cls = SupervisedStage if stage_name == "dhln" else FPTNStage
    stage = cls(cfg, info.device, info.rank, info.world_size, train_faces=faces)
    Trainer(cfg, stage, out + "/run", info.rank, info.world_size).fit()
    state = {f"{m}.{k}": v for m, mod in stage.modules.items() for k, v in mod.state_dict().items()}
    torch.save(state, f"{out}/rank{info.rank}.pt")
    cleanup()
    """
)


def _torchrun(tmp_path: Path, stage: str, *overrides: str) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
        stage,
        *TINY,
        *overrides,
    ]
    log = tmp_path / "torchrun.log"
    with open(log, "w") as fh:
        r = subprocess.run(
            cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
    assert r.returncode == 0, log.read_text()[-3000:]


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k


def test_ddp_two_ranks_agree_and_learn(tmp_path):
    _torchrun(tmp_path, "dhln", "train.steps=30", "train.batch_size=8", "train.log_every=5")
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    _same(r0, r1)
    from sht.train.logging import read_metrics

    log = read_metrics(tmp_path / "run" / "metrics.csv")  # written by rank 0 only
    total = [v for _, v in log["train/total"]]
    assert total[-1] < 0.8 * total[0], total
    assert len(log["train/total"]) == 6  # one writer: no duplicated rows
    assert (tmp_path / "run" / "checkpoints" / "last.safetensors").exists()


def test_ddp_gan_stage_synchronises_generator_and_discriminators(tmp_path):
    import numpy as np

    from sht.models import VGG19Conv12

    rng = np.random.default_rng(0)
    VGG19Conv12.from_arrays(
        rng.normal(0, 0.05, (64, 3, 3, 3)).astype(np.float32),
        np.zeros(64, np.float32),
        rng.normal(0, 0.02, (64, 64, 3, 3)).astype(np.float32),
        np.zeros(64, np.float32),
    ).save_npz(tmp_path / "vgg.npz")
    _torchrun(
        tmp_path,
        "fptn",
        "train.steps=6",
        "train.batch_size=8",
        f"fptn.vgg_weights={tmp_path / 'vgg.npz'}",
        "fptn.channels=8",
        "fptn.max_channels=16",
        "fptn.blocks=2",
        "fptn.disc_channels=8",
        "fptn.disc_layers=2",
    )
    _same(torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt"))
