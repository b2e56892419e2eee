"""Which process of a ``torchrun`` job this is, and the few collectives the cache's users need.

``torchrun`` (and ``srun torchrun``) set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`start`
joins the process group they describe (nccl for CUDA, gloo on the CPU). Without them a job is one
process, :func:`current` is rank 0 of 1 and every collective here returns at once. Used by the
streaming reader, a rank-parallel extraction and DDP training alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0 alone writes files: metrics, checkpoints, reports, predictions."""
        return self.rank == 0


def share(length: int, part: int, parts: int) -> tuple[int, int]:
    """``[first, stop)`` of part ``part`` when ``length`` items are cut into ``parts``
    contiguous parts whose lengths differ by at most one (the longer ones first)."""
    base, extra = divmod(length, parts)
    first = part * base + min(part, extra)
    return first, first + base + (part < extra)


def launched() -> bool:
    """Started by torchrun (or srun with the same variables) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(device: str, backend: str | None = None) -> World:
    """Join the process group torchrun describes (once per process); the world we are in.
    The backend: nccl for CUDA, gloo on the CPU, unless given (an extraction exchanges only
    small Python objects and uses gloo everywhere)."""
    if launched() and not dist.is_initialized():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend or ("nccl" if device == "cuda" else "gloo"))
    return current()


def current() -> World:
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    )


def stop() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def gather_to_main(world: World, value: object) -> list[object] | None:
    """Every rank's ``value``, in rank order, on rank 0 only (None elsewhere)."""
    if not world.distributed:
        return [value]
    values: list[object] | None = [None] * world.size if world.main else None
    dist.gather_object(value, values, dst=0)
    return values


def broadcast(world: World, value: object) -> object:
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
