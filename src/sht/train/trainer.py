"""The training loop shared by every stage: schedule, progress, logs, evaluation, checkpoints and resume.

A run directory holds ``config.yaml``, ``metrics.csv`` (and ``tensorboard/``), ``checkpoints/last.safetensors``
(written every ``checkpoint_every`` steps, at the end, and on SIGTERM/SIGINT) and ``checkpoints/best.safetensors``
(best validation score). Starting a run in a directory with a ``last`` checkpoint resumes it exactly: the data
order and augmentation of every step are functions of ``(seed, step)``, so no sampler state is needed.
"""

from __future__ import annotations

import math
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from ..checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from ..config import Config, DetectorConfig, check_model_config, config_to_dict, dump_yaml
from ..errors import TrainingDiverged
from .distributed import average_buffers
from .logging import MetricLogger
from .stages import NonFiniteLoss


class Stage(Protocol):
    name: str
    best_metric: str
    lower_is_better: bool

    @property
    def modules(self) -> dict[str, nn.Module]: ...

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def train_step(self, step: int) -> dict[str, torch.Tensor]: ...

    def evaluate(self) -> dict[str, float]: ...


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"train.device={name} but CUDA is not available in this torch build")
    return dev


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def lr_lambda(cfg: Config | DetectorConfig) -> Any:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` (``schedule='cosine'``) or constant."""
    t = cfg.train

    def f(step: int) -> float:
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "constant":
            return 1.0
        span = max(t.steps - t.warmup_steps, 1)
        prog = min(max(step - t.warmup_steps, 0) / span, 1.0)
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * prog))

    return f


class Trainer:
    """Runs ``stage`` for ``cfg.train.steps`` steps in ``out_dir`` (resuming if a checkpoint is there); ``cfg`` is
    a landmark-model or a face-detector config (only its ``train`` and ``model`` parts are read)."""

    def __init__(
        self,
        cfg: Config | DetectorConfig,
        stage: Stage,
        out_dir: str | Path,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg = cfg
        self.stage = stage
        self.out = Path(out_dir)
        self.rank = rank
        self.world_size = world_size
        self.is_main = rank == 0
        self.max_nonfinite = cfg.train.max_nonfinite
        self.ckpt_dir = self.out / "checkpoints"
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, lr_lambda(cfg)) for k, o in stage.optimizers.items()}
        self.step = 0
        self.seconds = 0.0  # training wall time, accumulated across resumes
        self._t0 = time.time()
        self.best: float | None = None
        self._stop_signal: int | None = None

    # -- checkpoints ------------------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "stage": self.stage.name,
            "step": self.step,
            "seconds": self.seconds + time.time() - self._t0,
            "best": self.best,
            "best_metric": self.stage.best_metric,
            "config": config_to_dict(self.cfg),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "rng": {"torch": torch.get_rng_state().tolist()},
            "saved_at": time.time(),
        }

    def save(self, name: str, collective: bool = False) -> Path | None:
        """Write checkpoint ``name`` (rank 0). ``collective``: every rank calls this at the same step, so the
        BatchNorm statistics are first averaged over the ranks."""
        if collective and self.world_size > 1:
            average_buffers(list(self.stage.modules.values()))
        if not self.is_main:
            return None
        for m, mod in self.stage.modules.items():
            for key, t in mod.state_dict().items():
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise TrainingDiverged(
                        f"{m}.{key} is not finite at step {self.step}; not saving over the last good checkpoint "
                        f"{self.ckpt_dir / 'last.safetensors'}"
                    )
        return save_checkpoint(
            self.ckpt_dir / f"{name}.safetensors", self.stage.modules, self.stage.optimizers, self._state()
        )

    def resume(self, path: Path) -> None:
        _, doc = read_checkpoint(path)
        if doc.get("stage") != self.stage.name:
            raise CheckpointError(f"{path}: a {doc.get('stage')!r} checkpoint cannot resume stage {self.stage.name!r}")
        check_model_config(path, doc.get("config", {}).get("model"), self.cfg)
        load_checkpoint(path, self.stage.modules, self.stage.optimizers)
        for k, s in self.schedulers.items():
            s.load_state_dict(doc["schedulers"][k])
        self.step = int(doc["step"])
        self.seconds = float(doc.get("seconds", 0.0))
        self._t0 = time.time()
        self.best = doc.get("best")
        torch.set_rng_state(torch.tensor(doc["rng"]["torch"], dtype=torch.uint8))

    # -- non-finite steps -------------------------------------------------------------------------------------
    def _snapshot_buffers(self) -> dict[str, torch.Tensor]:
        return {
            f"{m}.{n}": b.detach().clone()
            for m, mod in self.stage.modules.items()
            for n, b in mod.named_buffers()
            if b.is_floating_point()
        }

    def _restore_buffers(self, saved: dict[str, torch.Tensor]) -> None:
        for m, mod in self.stage.modules.items():
            for n, b in mod.named_buffers():
                key = f"{m}.{n}"
                if key in saved:
                    b.copy_(saved[key])

    # -- signals ----------------------------------------------------------------------------------------------
    def _on_signal(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def _install_signals(self) -> dict[int, Any]:
        old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                old[sig] = signal.signal(sig, self._on_signal)
            except ValueError:  # not in the main thread
                pass
        return old

    # -- loop -------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, float]:
        """Train to ``cfg.train.steps``; returns the last validation metrics."""
        cfg = self.cfg.train
        self.out.mkdir(parents=True, exist_ok=True)
        last = self.ckpt_dir / "last.safetensors"
        logger = MetricLogger(self.out, tensorboard=cfg.tensorboard, enabled=self.is_main)
        if last.exists():
            self.resume(last)
            logger.truncate_after(self.step)
        if self.is_main:
            (self.out / "config.yaml").write_text(dump_yaml(self.cfg))
        old = self._install_signals()
        nonfinite = 0
        metrics: dict[str, float] = {}
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            desc=self.stage.name,
            disable=not (cfg.progress and self.is_main),
            dynamic_ncols=True,
        )
        running: dict[str, float] = {}
        good_buffers = self._snapshot_buffers()
        t0, n0 = time.time(), self.step
        try:
            while self.step < cfg.steps:
                try:
                    parts = self.stage.train_step(self.step)
                    nonfinite = 0
                    good_buffers = self._snapshot_buffers()
                except NonFiniteLoss as exc:
                    for o in self.stage.optimizers.values():
                        o.zero_grad(set_to_none=True)
                    self._restore_buffers(good_buffers)  # e.g. BatchNorm statistics of the failed forward
                    nonfinite += 1
                    logger.log(self.step, {"train/skipped_nonfinite": 1})
                    print(
                        f"sht: step {self.step}: {exc.name} is not finite; step skipped ({nonfinite} in a row)",
                        file=sys.stderr,
                    )
                    if nonfinite >= self.max_nonfinite:
                        raise TrainingDiverged(
                            f"{exc.name} was not finite for {nonfinite} consecutive steps (step {self.step}); "
                            f"stopped; the last good checkpoint is {last}"
                        ) from None
                    parts = {}
                for s in self.schedulers.values():
                    s.step()
                self.step += 1
                for k, v in parts.items():
                    running[k] = running.get(k, 0.0) + float(v)
                running["_n"] = running.get("_n", 0) + (1 if parts else 0)
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    n = max(running.pop("_n", 1), 1)
                    vals = {k: v / n for k, v in running.items()}
                    vals["train/lr"] = next(iter(self.stage.optimizers.values())).param_groups[0]["lr"]
                    vals["train/images_per_s"] = (
                        (self.step - n0) * cfg.batch_size * self.world_size / max(time.time() - t0, 1e-9)
                    )
                    logger.log(self.step, vals)
                    bar.set_postfix(
                        {
                            k.split("/")[-1]: f"{v:.4g}"
                            for k, v in vals.items()
                            if "loss" in k or k in ("train/total", "train/heatmap", "train/pixel")
                        },
                        refresh=False,
                    )
                    running = {}
                bar.update(1)
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    metrics = self._evaluate(logger)
                if (self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps) and nonfinite == 0:
                    self.save("last", collective=True)
                if self._stop_signal is not None:
                    self.save("last")
                    name = signal.Signals(self._stop_signal).name
                    print(
                        f"sht: {name} received: saved {last} at step {self.step}; run the same command to resume",
                        file=sys.stderr,
                    )
                    raise KeyboardInterrupt(name)
        finally:
            bar.close()
            logger.close()
            for sig, h in old.items():
                signal.signal(sig, h)
        return metrics

    def _evaluate(self, logger: MetricLogger) -> dict[str, float]:
        if not self.is_main:
            return {}
        metrics = self.stage.evaluate()
        if not metrics:
            return metrics
        logger.log(self.step, metrics)
        score = metrics.get(self.stage.best_metric)
        if score is not None:
            better = self.best is None or (score < self.best if self.stage.lower_is_better else score > self.best)
            if better:
                self.best = score
                self.save("best")
        return metrics


def set_threads(n: int) -> None:
    """Use ``n`` intra-op threads (0: leave PyTorch's default)."""
    if n > 0:
        torch.set_num_threads(n)
    elif os.environ.get("OMP_NUM_THREADS") is None:
        torch.set_num_threads(max(torch.get_num_threads(), 1))
