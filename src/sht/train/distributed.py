"""Multi-process training under ``torchrun`` (DistributedDataParallel; no launcher of our own).

``torchrun --nproc_per_node N -m sht.cli train CONFIG`` (or ``recipe``) sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``;
:func:`setup` joins the process group (NCCL on CUDA, gloo on CPU) and picks the device. Each rank draws a disjoint
slice of every global batch (:class:`~sht.data.dataset.EpochSampler`), only rank 0 logs, evaluates and writes
checkpoints, and every optimiser's gradients are averaged by DDP before its step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun; a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(0, 1, device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    rank = dist.get_rank()
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    return DistInfo(rank, dist.get_world_size(), device)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: nn.Module, world_size: int) -> nn.Module:
    """DDP around ``module`` when more than one process trains (with synchronised BatchNorm on CUDA, where
    PyTorch supports it); the module itself otherwise."""
    if world_size <= 1:
        return module
    if next(module.parameters()).is_cuda:
        nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return nn.parallel.DistributedDataParallel(module)


def average_buffers(modules: list[nn.Module]) -> None:
    """Average floating buffers (BatchNorm running statistics) over the ranks: a collective, every rank calls it."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return
    world = dist.get_world_size()
    for mod in modules:
        for b in mod.buffers():
            if b.is_floating_point():
                dist.all_reduce(b)
                b.div_(world)


def all_finite(value: torch.Tensor) -> bool:
    """Whether ``value`` is finite on every rank (so that all ranks skip a step together, never deadlock)."""
    ok = torch.isfinite(value.detach()).all()
    if dist.is_initialized() and dist.get_world_size() > 1:
        flag = ok.to(torch.float32).reshape(1)
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item() > 0)
    return bool(ok)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
