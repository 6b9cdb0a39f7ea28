"""The training stages of the method (paper §3, §4.1), in one place.

1. :class:`SupervisedStage` -- DHLN (or its one-stream variants SHN/FHS) on labeled faces, Eq. 4.
2. :class:`FPTNStage` -- FPTN and its discriminators D_A/D_S on ground-truth heatmaps of labeled image pairs,
   Eq. 5-8.
3. :class:`JointStage` -- DHLN and FPTN together on labeled pairs: DHLN's hallucinated faces and heatmaps are
   FPTN's inputs, so the transfer losses reach DHLN (Eq. 9 with labeled data only).
4. :class:`JointStage` with unlabeled pairs (still images and/or video clips) added: Eq. 9 with Eq. 10's
   label-free DHLN loss for them -- no landmark label is read for unlabeled faces.

Each stage owns its networks, optimisers, data and one optimisation step; :class:`~sht.train.trainer.Trainer` owns
the loop (schedule, logging, evaluation, checkpoints, resume).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config import Config
from ..data.dataset import Batch, BatchBuilder, EpochSampler, FaceSet, load_sources, step_generator
from ..data.formats import DataError
from ..data.heatmaps import HeatmapCodec
from ..data.noise import with_label_noise
from ..data.pairs import PairBuilder
from ..evaluation import evaluate_model
from ..losses import LossParts, dhln_loss, discriminator_loss, jasrnet_loss, pose_transfer_loss
from ..models import DHLN, FPTN, AppearanceDiscriminator, ShapeDiscriminator, VGG19Conv12
from ..models.factory import build_model
from .checkpoint import load_checkpoint
from .distributed import all_finite, wrap


class NonFiniteLoss(RuntimeError):
    """A loss or gradient that is NaN or infinite; the step is skipped."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA when enabled (no loss scaling needed); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def check_finite(named: Iterator[tuple[str, torch.Tensor]]) -> None:
    """Raise :class:`NonFiniteLoss` naming the first non-finite value (decided together by all ranks)."""
    for name, value in named:
        if not all_finite(value):
            raise NonFiniteLoss(name)


def backward_and_step(
    loss: LossParts, name: str, params: list[nn.Parameter], opt: torch.optim.Optimizer, grad_clip: float
) -> None:
    """Zero, check the loss, backward, check the gradients (or clip them), step."""
    opt.zero_grad(set_to_none=True)
    check_finite(iter([(f"{name} loss ({'+'.join(k for k in loss.parts if k != 'total')})", loss.total)]))
    loss.total.backward()
    if grad_clip > 0:
        norm = nn.utils.clip_grad_norm_(params, grad_clip)
        check_finite(iter([(f"{name} gradient norm", norm)]))
    else:
        grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
        if grads:
            check_finite(iter([(f"{name} gradient", torch.cat(grads).sum())]))
    opt.step()


def load_labeled(cfg: Config, rank: int = 0) -> tuple[FaceSet, FaceSet | None]:
    """Training faces (``data.train``) and validation faces (``data.val``, at most ``val_limit``)."""
    m, d = cfg.model, cfg.data
    train = load_sources(
        d.train, m.face_size, d.margin, d.context, m.num_landmarks, d.cache_dir, progress=rank == 0, strict=d.strict
    )
    if train.problems and rank == 0:
        shown = "\n  ".join(train.problems[:5])
        more = f"\n  ... and {len(train.problems) - 5} more" if len(train.problems) > 5 else ""
        print(
            f"sht: skipped {len(train.problems)} bad training sample(s) of {len(train) + len(train.problems)} "
            f"(set data.strict=true to stop instead):\n  {shown}{more}",
            file=sys.stderr,
        )
    if train.num_points != m.num_landmarks:
        raise DataError(f"training faces have {train.num_points} points but model.num_landmarks is {m.num_landmarks}")
    if d.label_noise > 0:  # the noisy-label setting (sht.data.noise)
        train = with_label_noise(train, d.label_noise, d.label_noise_seed)
    val = None
    if d.val:
        val = load_sources(d.val, m.face_size, d.margin, d.context, m.num_landmarks, d.cache_dir, strict=d.strict)
        if d.val_limit and len(val) > d.val_limit:
            val = val.subset(torch.linspace(0, len(val) - 1, d.val_limit).round().long().unique())
    return train, val


def dhln_metrics(
    model: DHLN, val: FaceSet | None, codec: HeatmapCodec, lr_sizes: list[int], device: torch.device
) -> dict[str, float]:
    """Validation NME/FR/AUC and PSNR/SSIM per LR size and their means (``val/nme``, ``val/psnr``, ...)."""
    if val is None:
        return {}
    out: dict[str, float] = {}
    for s, r in evaluate_model(model, val, codec, sorted(set(lr_sizes)), device=device).items():
        out.update({f"val/{k}@{s}": v for k, v in r.summary().items() if k != "n"})
    for key in ("nme", "psnr", "ssim"):
        vals = [v for k, v in out.items() if k.startswith(f"val/{key}@")]
        if vals:
            out[f"val/{key}"] = float(np.mean(vals))
    return out


class SupervisedStage:
    """Stage 1: DHLN / SHN / FHS on labeled faces, Eq. 4 with intermediate supervision on every stack."""

    name = "dhln"

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        train_faces: FaceSet | None = None,
        val_faces: FaceSet | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.rank = rank
        self.codec = HeatmapCodec.from_config(cfg)
        m = cfg.model
        if train_faces is None:
            train_faces, val_faces = load_labeled(cfg, rank)
        self.train_faces, self.val_faces = train_faces, val_faces
        self.builder = BatchBuilder(train_faces, m.input_size, self.codec, cfg.data.lr_sizes, cfg.data.augment)
        self.sampler = EpochSampler(len(train_faces), cfg.train.batch_size, cfg.train.seed, rank, world_size)
        self.model = build_model(m).to(device, memory_format=torch.channels_last)
        self.net = wrap(self.model, world_size)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.lower_is_better = m.has_landmarks
        self.best_metric = "val/nme" if m.has_landmarks else "val/psnr"

    def init_from(self, checkpoint: str | Path) -> None:
        """Start from another run's DHLN weights (e.g. continue stage 1 with a new schedule)."""
        load_checkpoint(checkpoint, {"dhln": self.model})

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"dhln": self.model}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"dhln": self.optimizer}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.model.train()
        g = step_generator(cfg.train.seed, step, self.rank)
        batch = self.builder.build(self.sampler.indices(step), g).to(self.device)
        inp = batch.input.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, cfg.train.amp):
            out = self.net(inp, batch.base)
        b = batch
        if out.background is not None:  # JASRNet
            loss = jasrnet_loss(out.heatmaps, out.background, out.face, b.heatmaps, b.hr, b.visible)
        else:
            loss = dhln_loss(
                out.heatmaps, out.face, b.heatmaps, b.hr, cfg.loss, self.codec, b.points, visible=b.visible
            )
        backward_and_step(loss, "DHLN", list(self.model.parameters()), self.optimizer, cfg.train.grad_clip)
        return {f"train/{k}": v for k, v in loss.parts.items()}

    def evaluate(self) -> dict[str, float]:
        return dhln_metrics(self.model, self.val_faces, self.codec, self.cfg.data.lr_sizes, self.device)


class TransferParts:
    """FPTN, its two discriminators, the VGG-19 conv1_2 extractor and their optimisers (Eq. 5-8)."""

    def __init__(self, cfg: Config, device: torch.device, world_size: int = 1) -> None:
        f, m = cfg.fptn, cfg.model
        self.cfg = cfg
        self.fptn = FPTN(f, m.num_landmarks, m.face_size).to(device)
        self.d_app = AppearanceDiscriminator.from_config(f).to(device)
        self.d_shape = ShapeDiscriminator.from_config(f, m.num_landmarks).to(device)
        # DDP wrappers (the modules themselves when training in one process); the generator pass through the
        # discriminators uses the bare modules: it needs no discriminator gradient to be synchronised
        self.fptn_net = wrap(self.fptn, world_size)
        self.d_app_net = wrap(self.d_app, world_size)
        self.d_shape_net = wrap(self.d_shape, world_size)
        self.vgg = VGG19Conv12.from_npz(f.vgg_weights).to(device) if cfg.sht.lambda_perceptual > 0 else None
        betas = (f.betas[0], f.betas[1])
        self.opt_g = torch.optim.Adam(self.fptn.parameters(), lr=f.lr, betas=betas)
        self.d_params = [*self.d_app.parameters(), *self.d_shape.parameters()]
        self.opt_d = torch.optim.Adam(self.d_params, lr=f.disc_lr, betas=betas)

    def discriminate(
        self, cond: torch.Tensor, target_heatmaps: torch.Tensor, image: torch.Tensor, synced: bool = False
    ) -> list[torch.Tensor]:
        """Patch logits of D_A(I_con || I) and D_S(H_tar || I) (through the DDP wrappers when ``synced``)."""
        d_app, d_shape = (self.d_app_net, self.d_shape_net) if synced else (self.d_app, self.d_shape)
        return [d_app(cond, image), d_shape(target_heatmaps, image)]

    def discriminator_step(
        self,
        cond: torch.Tensor,
        target_heatmaps: torch.Tensor,
        real: torch.Tensor,
        fake: torch.Tensor,
        grad_clip: float,
    ) -> dict[str, torch.Tensor]:
        """One update of D_A and D_S on detached inputs (Eq. 6, discriminator side)."""
        cond, hm, fake = cond.detach(), target_heatmaps.detach(), fake.detach()
        both = self.discriminate(torch.cat([cond, cond]), torch.cat([hm, hm]), torch.cat([real, fake]), synced=True)
        n = real.shape[0]
        loss = discriminator_loss([d[:n] for d in both], [d[n:] for d in both])
        backward_and_step(LossParts(loss, {"d": loss.detach()}), "discriminator", self.d_params, self.opt_d, grad_clip)
        return {"train/discriminator": loss.detach()}

    def generator_loss(
        self, cond: torch.Tensor, target_heatmaps: torch.Tensor, generated: torch.Tensor, target: torch.Tensor
    ) -> LossParts:
        """Eq. 5 (generator side) with the discriminators frozen for this pass."""
        for p in self.d_params:
            p.requires_grad_(False)
        try:
            fake_logits = self.discriminate(cond, target_heatmaps, generated)
        finally:
            for p in self.d_params:
                p.requires_grad_(True)
        return pose_transfer_loss(generated, target, fake_logits, self.vgg, self.cfg.sht)

    def train(self) -> None:
        for mod in (self.fptn, self.d_app, self.d_shape):
            mod.train()


def swap_views(x: torch.Tensor) -> torch.Tensor:
    """``[j..., k...] -> [k..., j...]``: the other view of each pair."""
    n = x.shape[0] // 2
    return torch.cat([x[n:], x[:n]])


class FPTNStage:
    """Stage 2: FPTN on ground-truth heatmaps: transfer the HR face of view j to the pose of view k and back."""

    name = "fptn"
    best_metric = "val/transfer_l1"
    lower_is_better = True

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
        train_faces: FaceSet | None = None,
        val_faces: FaceSet | None = None,
    ) -> None:
        self.cfg, self.device, self.rank = cfg, device, rank
        self.codec = HeatmapCodec.from_config(cfg)
        if train_faces is None:
            train_faces, val_faces = load_labeled(cfg, rank)
        self.val_faces = val_faces
        builder = BatchBuilder(train_faces, cfg.model.input_size, self.codec, cfg.data.lr_sizes, cfg.data.augment)
        self.pairs = PairBuilder(builder, cfg.sht.pairs)
        self.sampler = EpochSampler(
            len(self.pairs), max(cfg.train.batch_size // 2, 1), cfg.train.seed, rank, world_size
        )
        self.t = TransferParts(cfg, device, world_size)

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"fptn": self.t.fptn, "d_app": self.t.d_app, "d_shape": self.t.d_shape}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"fptn": self.t.opt_g, "disc": self.t.opt_d}

    def _transfer(self, batch: Batch, net: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        assert batch.heatmaps is not None
        cond, hm_con = batch.hr, batch.heatmaps
        hm_tar, target = swap_views(hm_con), swap_views(batch.hr)
        return cond, hm_tar, net(cond, hm_con, hm_tar), target

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        self.t.train()
        g = step_generator(self.cfg.train.seed, step, self.rank)
        batch = self.pairs.build(self.pairs.anchors[self.sampler.indices(step)], g).to(self.device)
        cond, hm_tar, gen, target = self._transfer(batch, self.t.fptn_net)
        out = self.t.discriminator_step(cond, hm_tar, target, gen, self.cfg.train.grad_clip)
        loss = self.t.generator_loss(cond, hm_tar, gen, target)
        backward_and_step(loss, "FPTN", list(self.t.fptn.parameters()), self.t.opt_g, self.cfg.train.grad_clip)
        return {**out, **{f"train/pt_{k}": v for k, v in loss.parts.items()}}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        if self.val_faces is None:
            return {}
        self.t.fptn.eval()
        b = BatchBuilder(self.val_faces, self.cfg.model.input_size, self.codec, self.cfg.data.lr_sizes)
        pairs = PairBuilder(b, self.cfg.sht.pairs)
        n = min(len(self.val_faces), 32)
        batch = pairs.build(torch.arange(n), torch.Generator().manual_seed(0)).to(self.device)
        _, _, gen, target = self._transfer(batch, self.t.fptn)
        return {"val/transfer_l1": float((gen - target).abs().mean())}


class JointStage:
    """Stages 3 and 4: DHLN + FPTN (Eq. 9). Each step takes ``batch_size / 2`` pairs; in stage 4
    ``sht.weak.unlabeled_pairs`` of them are unlabeled (still images and/or video frames) and contribute only
    the label-free DHLN loss of Eq. 10 and the transfer losses."""

    best_metric = "val/nme"
    lower_is_better = True

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        weak: bool = False,
        rank: int = 0,
        world_size: int = 1,
        train_faces: FaceSet | None = None,
        val_faces: FaceSet | None = None,
        unlabeled: list[tuple[FaceSet, bool]] | None = None,
    ) -> None:
        self.name = "weak" if weak else "joint"
        self.cfg, self.device, self.rank = cfg, device, rank
        self.codec = HeatmapCodec.from_config(cfg)
        if not cfg.model.has_landmarks or not cfg.model.has_face or cfg.model.arch != "dhln":
            raise ValueError("SHT needs both DHLN streams (model.arch=dhln, model.streams=dhln)")
        if train_faces is None:
            train_faces, val_faces = load_labeled(cfg, rank)
        self.val_faces = val_faces
        m, d = cfg.model, cfg.data
        pairs_total = max(cfg.train.batch_size // 2, 1)
        n_unl = min(cfg.sht.weak.unlabeled_pairs, pairs_total - 1) if weak else 0
        self.labeled = PairBuilder(
            BatchBuilder(train_faces, m.input_size, self.codec, d.lr_sizes, d.augment), cfg.sht.pairs
        )
        self.sampler = EpochSampler(len(self.labeled), pairs_total - n_unl, cfg.train.seed, rank, world_size)
        self.unlabeled: list[tuple[PairBuilder, EpochSampler]] = []
        if weak:
            if not unlabeled:
                raise DataError("stage 4 (weak) has no unlabeled data: set sht.weak.images and/or sht.weak.videos")
            per = [n_unl // len(unlabeled) + (1 if i < n_unl % len(unlabeled) else 0) for i in range(len(unlabeled))]
            for (faces, video), k in zip(unlabeled, per, strict=True):
                if k == 0:
                    continue
                pb = PairBuilder(
                    BatchBuilder(faces, m.input_size, self.codec, d.lr_sizes, d.augment), cfg.sht.pairs, video=video
                )
                self.unlabeled.append(
                    (pb, EpochSampler(len(pb), k, cfg.train.seed + 17 * (len(self.unlabeled) + 1), rank, world_size))
                )
        self.model = DHLN(m).to(device, memory_format=torch.channels_last)
        self.net = wrap(self.model, world_size)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=cfg.sht.dhln_lr)
        self.t = TransferParts(cfg, device, world_size)

    def init_from(self, dhln: str | Path | None = None, transfer: str | Path | None = None) -> None:
        """Start from a stage-1 (or 3) DHLN and a stage-2 (or 3) FPTN with its discriminators (weights only)."""
        if dhln is not None:
            load_checkpoint(dhln, {"dhln": self.model})
        if transfer is not None:
            load_checkpoint(transfer, {"fptn": self.t.fptn, "d_app": self.t.d_app, "d_shape": self.t.d_shape})

    @property
    def modules(self) -> dict[str, nn.Module]:
        return {"dhln": self.model, "fptn": self.t.fptn, "d_app": self.t.d_app, "d_shape": self.t.d_shape}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"dhln": self.opt, "fptn": self.t.opt_g, "disc": self.t.opt_d}

    def _batches(self, step: int) -> tuple[Batch, list[Batch]]:
        g = step_generator(self.cfg.train.seed, step, self.rank)
        lab = self.labeled.build(self.labeled.anchors[self.sampler.indices(step)], g)
        unl = []
        for i, (pb, sampler) in enumerate(self.unlabeled):
            gu = step_generator(self.cfg.train.seed, step, self.rank, stream=i + 1)
            unl.append(pb.build(pb.anchors[sampler.indices(step)], gu))
        return lab, unl

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.model.train()
        self.t.train()
        lab, unl = self._batches(step)
        groups = [lab.to(self.device), *(b.to(self.device) for b in unl)]
        sizes = [g.input.shape[0] for g in groups]
        inp = torch.cat([g.input for g in groups]).contiguous(memory_format=torch.channels_last)
        with autocast(self.device, cfg.train.amp):
            out = self.net(inp, torch.cat([g.base for g in groups]))
        assert out.face is not None
        heat = [h.split(sizes) for h in out.heatmaps]
        faces = out.face.split(sizes)
        total = torch.zeros((), device=self.device)
        parts: dict[str, torch.Tensor] = {}
        conds, hm_cons, hm_tars, targets = [], [], [], []
        for gi, b in enumerate(groups):
            labeled = gi == 0
            dh = dhln_loss(
                [h[gi] for h in heat],
                faces[gi],
                b.heatmaps,
                b.hr,
                cfg.loss,
                self.codec,
                b.points,
                labeled=labeled,
                visible=b.visible,
            )
            total = total + dh.total
            tag = "dh" if labeled else "dh_unlabeled"
            parts.update({f"train/{tag}_{k}": v for k, v in dh.parts.items()})
            # Eq. 9: transfer view j's hallucinated face to view k's hallucinated heatmaps and back
            conds.append(faces[gi])
            hm_cons.append(heat[-1][gi])
            hm_tars.append(swap_views(heat[-1][gi]))
            targets.append(swap_views(b.hr))
        cond, hm_con, hm_tar, target = (torch.cat(x) for x in (conds, hm_cons, hm_tars, targets))
        gen = self.t.fptn_net(cond, hm_con, hm_tar)  # one pass for all groups (one DDP forward per backward)
        parts.update(self.t.discriminator_step(cond, hm_tar, target, gen, cfg.train.grad_clip))
        pt = self.t.generator_loss(cond, hm_tar, gen, target)
        parts.update({f"train/pt_{k}": v for k, v in pt.parts.items()})
        loss = LossParts(total + pt.total, {"total": (total + pt.total).detach()})
        params = [*self.model.parameters(), *self.t.fptn.parameters()]
        self.opt.zero_grad(set_to_none=True)
        backward_and_step(loss, "SHT (DHLN + FPTN)", params, self.t.opt_g, cfg.train.grad_clip)
        self.opt.step()
        parts["train/total"] = loss.total.detach()
        return parts

    def evaluate(self) -> dict[str, float]:
        return dhln_metrics(self.model, self.val_faces, self.codec, self.cfg.data.lr_sizes, self.device)
