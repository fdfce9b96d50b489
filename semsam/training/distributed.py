"""Device choice and multi-process training (torchrun + DistributedDataParallel: gloo on CPU, nccl on GPU)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class Placement:
    """Where this process trains: its device, rank and the number of processes (1 without torchrun)."""

    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and validation results."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """"auto" is the CUDA device of this process when CUDA is available, else the CPU.

    Raises:
        ValueError: CUDA asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this PyTorch sees no CUDA GPU; use device = \"cpu\"")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def start(device_name: str) -> Placement:
    """Joins the process group when started by torchrun (WORLD_SIZE > 1), else trains alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size == 1:
        return Placement(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Placement(device=device, rank=dist.get_rank(), world_size=dist.get_world_size())


def wrap(module: nn.Module, placement: Placement) -> nn.Module:
    """The module itself, or under DDP when distributed.

    Unused parameters are allowed: the mask-input encoder only works on steps with mask prompts, and the
    classification heads only on labelled data.
    """
    if not placement.distributed:
        return module
    device_ids = [placement.device.index] if placement.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids, find_unused_parameters=True)


def any_process(flag: bool, placement: Placement) -> bool:
    """Whether `flag` is set in any process, so that all processes stop at the same step."""
    if not placement.distributed:
        return flag
    value = torch.tensor([int(flag)], device=placement.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier(placement: Placement) -> None:
    """Waits for every process (e.g. until the main one has written a checkpoint)."""
    if placement.distributed:
        dist.barrier()


def stop(placement: Placement) -> None:
    """Leaves the process group."""
    if placement.distributed and dist.is_initialized():
        dist.destroy_process_group()
