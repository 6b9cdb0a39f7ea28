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
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_checkpoint
from ..config import Config
from ..data.dataset import Batch, BatchBuilder, EpochSampler, FaceSet, load_sources, step_generator
from ..data.formats import DataError
from ..data.heatmaps import HeatmapCodec
from ..data.noise import with_label_noise
from ..data.pairs import PairBuilder, view_transform
from ..evaluation import evaluate_model
from ..losses import (
    LossParts,
    dhln_loss,
    discriminator_loss,
    equivariance_loss,
    jasrnet_loss,
    pose_transfer_terms,
    weigh_transfer,
)
from ..metrics import displace_points
from ..models import DHLN, FPTN, AppearanceDiscriminator, ShapeDiscriminator, VGG19Conv12
from ..models.factory import build_model
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
        if cfg.train.init:
            self.init_from(cfg.train.init, cfg.train.init_skip)
        self.net = wrap(self.model, world_size)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.lower_is_better = m.has_landmarks
        self.best_metric = "val/nme" if m.has_landmarks else "val/psnr"

    def init_from(self, checkpoint: str | Path, skip: Sequence[str] = ()) -> None:
        """Start from another run's DHLN weights (a checkpoint or an fp16 export, widened; ``train.init``), but for
        the modules under ``skip`` (``train.init_skip``)."""
        load_checkpoint(checkpoint, {"dhln": self.model}, skip=skip)

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
    """FPTN, its two discriminators, the VGG-19 conv1_2 extractor and their optimisers (Eq. 5-8).

    FPTN and the discriminators work on faces of ``fptn.face_size`` (0: the model's face size); :meth:`fit`
    resizes faces to it."""

    def __init__(self, cfg: Config, device: torch.device, world_size: int = 1) -> None:
        f, m, sht = cfg.fptn, cfg.model, cfg.sht
        self.cfg = cfg
        self.size = f.face_size or m.face_size
        self.fptn = FPTN(f, m.num_landmarks, self.size).to(device)
        self.d_app = AppearanceDiscriminator.from_config(f).to(device)
        self.d_shape = ShapeDiscriminator.from_config(f, m.num_landmarks).to(device)
        # DDP wrappers (the modules themselves when training in one process); the generator pass through the
        # discriminators uses the bare modules: it needs no discriminator gradient to be synchronised
        self.fptn_net = wrap(self.fptn, world_size)
        self.d_app_net = wrap(self.d_app, world_size)
        self.d_shape_net = wrap(self.d_shape, world_size)
        fw, dw = sht.fptn_weights, sht.dhln_weights
        self.adversarial = fw[0] > 0 or dw[0] > 0  # the discriminators are trained whenever L_GAN is used
        need_vgg = fw[2] > 0 or dw[2] > 0
        self.vgg = VGG19Conv12.from_npz(f.vgg_weights).to(device) if need_vgg else None
        betas = (f.betas[0], f.betas[1])
        self.opt_g = torch.optim.Adam(self.fptn.parameters(), lr=f.lr, betas=betas)
        self.d_params = [*self.d_app.parameters(), *self.d_shape.parameters()]
        self.opt_d = torch.optim.Adam(self.d_params, lr=f.disc_lr, betas=betas)

    def fit(self, faces: torch.Tensor) -> torch.Tensor:
        """Faces resized to FPTN's size (bilinear, antialiased; unchanged when they already have it)."""
        if faces.shape[-1] == self.size:
            return faces
        return F.interpolate(faces.float(), size=(self.size, self.size), mode="bilinear", antialias=True)

    def discriminate(
        self, cond: torch.Tensor, target_heatmaps: torch.Tensor, image: torch.Tensor, synced: bool = False
    ) -> list[torch.Tensor]:
        """Patch logits of D_A(I_con || I) and D_S(H_tar || I) (through the DDP wrappers when ``synced``)."""
        d_app, d_shape = (self.d_app_net, self.d_shape_net) if synced else (self.d_app, self.d_shape)
        return [d_app(cond, image), d_shape(target_heatmaps, image)]

    def discriminator_step(
        self,
        cond: torch.Tensor,
        real_heatmaps: torch.Tensor,
        fake_heatmaps: torch.Tensor,
        real: torch.Tensor,
        fake: torch.Tensor,
        grad_clip: float,
    ) -> dict[str, torch.Tensor]:
        """One update of D_A and D_S on detached inputs (Eq. 6, discriminator side): real pairs
        ``(I_con || I_tar, H_real || I_tar)``, fake pairs ``(I_con || I_ger, H_tar || I_ger)``."""
        cond, fake = cond.detach(), fake.detach()
        hm = torch.cat([real_heatmaps.detach(), fake_heatmaps.detach()])
        both = self.discriminate(torch.cat([cond, cond]), hm, torch.cat([real, fake]), synced=True)
        n = real.shape[0]
        loss = discriminator_loss([d[:n] for d in both], [d[n:] for d in both])
        backward_and_step(LossParts(loss, {"d": loss.detach()}), "discriminator", self.d_params, self.opt_d, grad_clip)
        return {"train/discriminator": loss.detach()}

    def generator_terms(
        self,
        cond: torch.Tensor,
        target_heatmaps: torch.Tensor,
        generated: torch.Tensor,
        target: torch.Tensor,
        weights: tuple[float, ...] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms of Eq. 5 (generator side), with the discriminators frozen for this pass; with
        ``weights`` (gan, l1, perceptual) only the terms that some weight uses are computed."""
        fake_logits = None
        vgg = self.vgg if weights is None or weights[2] > 0 else None
        if self.adversarial and (weights is None or weights[0] > 0):
            trainable = [p.requires_grad for p in self.d_params]
            for p in self.d_params:
                p.requires_grad_(False)
            try:
                fake_logits = self.discriminate(cond, target_heatmaps, generated)
            finally:
                for p, t in zip(self.d_params, trainable, strict=True):
                    p.requires_grad_(t)
        return pose_transfer_terms(generated, target, fake_logits, vgg, self.cfg.sht.perceptual_size)

    def generator_loss(
        self, cond: torch.Tensor, target_heatmaps: torch.Tensor, generated: torch.Tensor, target: torch.Tensor
    ) -> LossParts:
        """Eq. 5 (generator side) with FPTN's own weights ``sht.fptn_weights``."""
        terms = self.generator_terms(cond, target_heatmaps, generated, target)
        total = weigh_transfer(terms, self.cfg.sht.fptn_weights)
        return LossParts(total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()})

    def train(self) -> None:
        for mod in (self.fptn, self.d_app, self.d_shape):
            mod.train()

    def freeze(self) -> None:
        """Fix FPTN and the discriminators (``sht.freeze_fptn``): gradients still flow through them."""
        for mod in (self.fptn, self.d_app, self.d_shape):
            mod.eval()
            for p in mod.parameters():
                p.requires_grad_(False)


def swap_views(x: torch.Tensor) -> torch.Tensor:
    """``[j..., k...] -> [k..., j...]``: the other view of each pair."""
    n = x.shape[0] // 2
    return torch.cat([x[n:], x[:n]])


def swap_views_grouped(x: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """:func:`swap_views` within each consecutive group of ``sizes`` rows (one pair batch per group)."""
    return torch.cat([swap_views(part) for part in x.split(sizes)])


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

    def _transfer(
        self, batch: Batch, net: nn.Module, heatmaps: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(condition faces, target heatmaps, transferred faces, target faces); ``heatmaps`` replaces the true
        heatmaps of the batch (e.g. displaced ones)."""
        hm_con = batch.heatmaps if heatmaps is None else heatmaps
        assert hm_con is not None
        cond = self.t.fit(batch.hr)
        hm_tar, target = swap_views(hm_con), swap_views(cond)
        return cond, hm_tar, net(cond, hm_con, hm_tar), target

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        self.t.train()
        g = step_generator(self.cfg.train.seed, step, self.rank)
        batch = self.pairs.build(self.pairs.anchors[self.sampler.indices(step)], g).to(self.device)
        cond, hm_tar, gen, target = self._transfer(batch, self.t.fptn_net)
        out = {}
        if self.t.adversarial:
            out = self.t.discriminator_step(cond, hm_tar, hm_tar, target, gen, self.cfg.train.grad_clip)
        loss = self.t.generator_loss(cond, hm_tar, gen, target)
        backward_and_step(loss, "FPTN", list(self.t.fptn.parameters()), self.t.opt_g, self.cfg.train.grad_clip)
        return {**out, **{f"train/pt_{k}": v for k, v in loss.parts.items()}}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Transfer L1 on validation pairs with the true target heatmaps, and with heatmaps rendered from
        landmarks moved by 10 % of the inter-ocular distance (``val/pose_gap`` = their ratio - 1: how much
        FPTN's output depends on the pose it is given)."""
        if self.val_faces is None:
            return {}
        self.t.fptn.eval()
        b = BatchBuilder(self.val_faces, self.cfg.model.input_size, self.codec, self.cfg.data.lr_sizes)
        pairs = PairBuilder(b, self.cfg.sht.pairs)
        n = min(len(self.val_faces), 32)
        g = torch.Generator().manual_seed(0)
        batch = pairs.build(torch.arange(n), g).to(self.device)
        _, _, gen, target = self._transfer(batch, self.t.fptn)
        l1 = float((gen - target).abs().mean())
        assert batch.points is not None
        moved = displace_points(batch.points.cpu(), 0.10, g).to(self.device)
        _, _, gen_d, _ = self._transfer(batch, self.t.fptn, self.codec.encode(moved, batch.visible))
        l1_d = float((gen_d - target).abs().mean())
        return {"val/transfer_l1": l1, "val/transfer_l1_displaced": l1_d, "val/pose_gap": l1_d / max(l1, 1e-12) - 1}


class JointStage:
    """Stages 3 and 4: DHLN + FPTN (Eq. 9). Each step takes ``batch_size / 2`` labeled pairs; in stage 4
    ``sht.weak.unlabeled_pairs`` unlabeled pairs (still images and/or video frames) are added to them
    (``sht.add_unlabeled``; otherwise they take the place of labeled ones, as in the paper's batch of 16) and
    contribute only the label-free DHLN loss of Eq. 10 and the pair terms: the transfer losses and, for image
    pairs, the equivariance loss (``sht.lambda_equivariance``). With all transfer weights at 0 there is no FPTN
    (equivariance alone; stage 2 is then not needed)."""

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
        sht = cfg.sht
        if not cfg.model.has_landmarks or not cfg.model.has_face or cfg.model.arch != "dhln":
            raise ValueError("SHT needs both DHLN streams (model.arch=dhln, model.streams=dhln)")
        if train_faces is None:
            train_faces, val_faces = load_labeled(cfg, rank)
        self.val_faces = val_faces
        m, d = cfg.model, cfg.data
        pairs_total = max(cfg.train.batch_size // 2, 1)
        if not weak:
            n_unl, n_lab = 0, pairs_total
        elif sht.add_unlabeled:
            n_unl, n_lab = max(sht.weak.unlabeled_pairs, 1), pairs_total
        else:
            n_unl = min(sht.weak.unlabeled_pairs, pairs_total - 1)
            n_lab = pairs_total - n_unl
        self.labeled = PairBuilder(
            BatchBuilder(train_faces, m.input_size, self.codec, d.lr_sizes, d.augment), cfg.sht.pairs
        )
        self.sampler = EpochSampler(len(self.labeled), n_lab, cfg.train.seed, rank, world_size)
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
        self.t = TransferParts(cfg, device, world_size) if sht.uses_transfer else None
        self.frozen = self.t is not None and sht.freeze_fptn
        if self.t is not None and self.frozen:
            self.t.freeze()

    def init_from(self, dhln: str | Path | None = None, transfer: str | Path | None = None) -> None:
        """Start from a stage-1 (or 3) DHLN and a stage-2 (or 3) FPTN with its discriminators (weights only;
        ``transfer`` is not read when the stage has no FPTN)."""
        if dhln is not None:
            load_checkpoint(dhln, {"dhln": self.model})
        if transfer is not None and self.t is not None:
            load_checkpoint(transfer, {"fptn": self.t.fptn, "d_app": self.t.d_app, "d_shape": self.t.d_shape})

    @property
    def modules(self) -> dict[str, nn.Module]:
        if self.t is None:
            return {"dhln": self.model}
        return {"dhln": self.model, "fptn": self.t.fptn, "d_app": self.t.d_app, "d_shape": self.t.d_shape}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self.t is None:
            return {"dhln": self.opt}
        return {"dhln": self.opt, "fptn": self.t.opt_g, "disc": self.t.opt_d}

    def _batches(self, step: int) -> tuple[Batch, list[Batch]]:
        g = step_generator(self.cfg.train.seed, step, self.rank)
        lab = self.labeled.build(self.labeled.anchors[self.sampler.indices(step)], g)
        unl = []
        for i, (pb, sampler) in enumerate(self.unlabeled):
            gu = step_generator(self.cfg.train.seed, step, self.rank, stream=i + 1)
            unl.append(pb.build(pb.anchors[sampler.indices(step)], gu))
        return lab, unl

    @property
    def group_is_video(self) -> list[bool]:
        """Per batch group (labeled first, then each unlabeled source): whether its pairs are video frames."""
        return [False, *(pb.video for pb, _ in self.unlabeled)]

    def pose(self, heatmaps: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        """FPTN's pose input from DHLN's final heatmaps (``sht.fptn_heatmaps``); ``offset`` ``(B, K, 2)`` moves
        each landmark by that many image pixels (zero offsets with a gradient: the transfer probe)."""
        if self.cfg.sht.fptn_heatmaps == "rendered":
            pts = self.codec.local_soft_argmax(heatmaps, self.cfg.sht.decode_radius)
            return self.codec.encode(pts if offset is None else pts + offset)
        return heatmaps if offset is None else self.codec.translate(heatmaps, offset)

    def pair_terms(
        self,
        heatmaps: list[torch.Tensor],
        faces: list[torch.Tensor],
        groups: list[Batch],
        video: list[bool],
        offsets: list[torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
        """The unweighted pair terms of Eq. 9 for each group's final heatmaps and hallucinated faces: the transfer
        terms of Eq. 5 (``adversarial``, ``l1``, ``perceptual``; j -> k and k -> j in one pass over all groups) and,
        for still-image groups, ``equivariance``. Also returns FPTN's inputs and output (for the discriminator
        step) or None without FPTN. ``offsets`` (one ``(B, K, 2)`` per group): see :meth:`pose`."""
        sht = self.cfg.sht
        terms: dict[str, torch.Tensor] = {}
        if sht.lambda_equivariance > 0:
            eq = []
            for gi, (h, b) in enumerate(zip(heatmaps, groups, strict=True)):
                if video[gi]:
                    continue
                if offsets is not None:
                    h = self.codec.translate(h, offsets[gi])
                n = h.shape[0] // 2
                eq.append(
                    equivariance_loss(h[:n], h[n:], view_transform(b), self.codec, self.cfg.loss.foreground_weight)
                )
            if eq:
                terms["equivariance"] = torch.stack(eq).mean()
        if self.t is None:
            return terms, None
        conds, hm_cons, hm_reals, targets = [], [], [], []
        for gi, (h, face, b) in enumerate(zip(heatmaps, faces, groups, strict=True)):
            pose = self.pose(h, None if offsets is None else offsets[gi])
            conds.append(self.t.fit(face))
            hm_cons.append(pose)
            truth = b.heatmaps is not None and sht.real_heatmaps == "truth"
            hm_reals.append(swap_views(b.heatmaps if truth else pose))  # type: ignore[arg-type]
            targets.append(self.t.fit(swap_views(b.hr)))
        cond, hm_con, hm_real, target = (torch.cat(x) for x in (conds, hm_cons, hm_reals, targets))
        hm_tar = swap_views_grouped(hm_con, [h.shape[0] for h in heatmaps])
        net = self.t.fptn if self.frozen else self.t.fptn_net
        gen = net(cond, hm_con, hm_tar)  # one pass for all groups (one DDP forward per backward)
        d_cond, d_hm = (cond.detach(), hm_tar.detach()) if sht.detach_condition else (cond, hm_tar)
        used = sht.dhln_weights if self.frozen else tuple(map(max, sht.dhln_weights, sht.fptn_weights))
        terms.update(self.t.generator_terms(d_cond, d_hm, gen, target, used))
        return terms, {"cond": cond, "hm_real": hm_real, "hm_tar": hm_tar, "target": target, "gen": gen}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg, sht = self.cfg, self.cfg.sht
        self.model.train()
        if self.t is not None and not self.frozen:
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
        terms, fptn_io = self.pair_terms(list(heat[-1]), list(faces), groups, self.group_is_video)
        if "equivariance" in terms:
            total = total + sht.lambda_equivariance * terms["equivariance"]
        pt_dhln = pt_fptn = None
        if self.t is not None and fptn_io is not None:
            if not self.frozen and self.t.adversarial:
                parts.update(
                    self.t.discriminator_step(
                        fptn_io["cond"],
                        fptn_io["hm_real"],
                        fptn_io["hm_tar"],
                        fptn_io["target"],
                        fptn_io["gen"],
                        cfg.train.grad_clip,
                    )
                )
            pt_dhln = weigh_transfer(terms, sht.dhln_weights)
            total = total + pt_dhln
            if not self.frozen and sht.fptn_weights != sht.dhln_weights:
                pt_fptn = weigh_transfer(terms, sht.fptn_weights)
            parts["train/pt_total"] = pt_dhln.detach()
        parts.update({f"train/pt_{k}": v.detach() for k, v in terms.items()})
        parts["train/total"] = total.detach()
        dhln_params = list(self.model.parameters())
        fptn_params = [] if self.t is None or self.frozen else list(self.t.fptn.parameters())
        opts = [self.opt] + ([self.t.opt_g] if fptn_params and self.t is not None else [])
        for o in opts:
            o.zero_grad(set_to_none=True)
        check_finite(iter([("SHT loss", total)]))
        fptn_grads: tuple[torch.Tensor | None, ...] | None = None
        if pt_fptn is not None:  # FPTN's own weights differ from those that reach DHLN
            fptn_grads = (
                torch.autograd.grad(pt_fptn, fptn_params, retain_graph=True, allow_unused=True)
                if pt_fptn.requires_grad
                else (None,) * len(fptn_params)
            )
        total.backward()
        if fptn_grads is not None:
            for p, g in zip(fptn_params, fptn_grads, strict=True):
                p.grad = g
        params = dhln_params + fptn_params
        if cfg.train.grad_clip > 0:
            norm = nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            check_finite(iter([("SHT gradient norm", norm)]))
        else:
            grads = [p.grad.detach().reshape(-1) for p in params if p.grad is not None]
            if grads:
                check_finite(iter([("SHT gradient", torch.cat(grads).sum())]))
        for o in opts:
            o.step()
        return parts

    def evaluate(self) -> dict[str, float]:
        return dhln_metrics(self.model, self.val_faces, self.codec, self.cfg.data.lr_sizes, self.device)
