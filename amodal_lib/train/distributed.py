"""Devices, seeds and several processes: what every training run sets up before its first step.

``resolve_device(spec="auto") -> torch.device``
    "auto" picks CUDA, else MPS, else CPU; "cpu", "cuda", "cuda:1", "mps" are taken as given
    (a clear error when that device is not available).
``seed_everything(seed)``
    Seeds python ``random``, numpy and torch (all CUDA devices too).
``setup_distributed(device="auto") -> Dist``
    Reads torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; with more than one process it
    initialises the process group (nccl on CUDA, one GPU per local rank; gloo on CPU), and
    destroys it at exit. A no-op for one process. ``Dist`` has ``rank, world_size,
    local_rank, device, is_main``.
``wrap_ddp(model, dist)`` / ``unwrap(model)``
    DistributedDataParallel around a module when ``dist.world_size > 1`` (otherwise the
    module itself), and the plain module back.
"""
from __future__ import annotations

import atexit
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn

from ..errors import ArgumentError


# --------------------------------------------------------------------------- devices, seeds
def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA if available, else Apple MPS, else CPU; otherwise the named device."""
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ArgumentError(f"unknown device {spec!r}: use auto, cpu, cuda, cuda:N or mps") from e
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ArgumentError(f"unsupported device {spec!r}: use auto, cpu, cuda, cuda:N or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ArgumentError(f"device {spec!r} requested but CUDA is not available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ArgumentError(f"device {spec!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ArgumentError(f"device {spec!r} requested but MPS is not available")
    return dev


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


# --------------------------------------------------------------------------- distributed
@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str | torch.device | None = "auto") -> Dist:
    """Process-group setup from torchrun's env vars; a no-op (rank 0 of 1) for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if world <= 1:
        return Dist(0, 1, 0, dev)
    if dev.type == "cuda":
        dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend=backend)
        atexit.register(_destroy)   # gloo's threads may still hold work at interpreter exit: SIGABRT
    return Dist(tdist.get_rank(), tdist.get_world_size(), local, dev)


def _destroy() -> None:
    """The process group torn down while the interpreter is whole (a process that exits with gloo's
    group alive can abort at finalisation: "terminate called without an active exception").

    This stops gloo's threads only where nothing else holds the group: once DDP has wrapped a model,
    torch keeps it referenced (torch 2.14: its threads outlive this call, even with the wrapper
    deleted), so a gloo rank that has finished its work can still, rarely, abort on its way out."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap_ddp(model: nn.Module, dist: Dist, **kwargs) -> nn.Module:
    """DistributedDataParallel around ``model`` when several processes run, else ``model``."""
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP
    ids = [dist.device.index] if dist.device.type == "cuda" else None
    return DDP(model, device_ids=ids, **kwargs)


def unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)


def _all_gather_objects(obj: Any, dist: Dist) -> list:
    if not dist.enabled:
        return [obj]
    out = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out
