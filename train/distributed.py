"""One student over several processes: torch.distributed as launched by ``torchrun``.

``torchrun --nproc_per_node N -m train.run ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`start` then joins the process group (nccl for CUDA, gloo on the CPU) and the trainer wraps
the student in ``DistributedDataParallel``. Without those variables a run is one process and
everything here is a no-op, so single-process results are unchanged.

Every rank must run the same number of optimiser steps, or DDP waits forever at the end of an
epoch for a rank that has no batch left: :func:`rank_part` cuts each *global* batch (the per-rank
batch size x the world size) into contiguous, near-equal parts, one per rank, so every rank gets a
part of every global batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from extract.store.world import (  # noqa: F401  (the trainer's one place for rank helpers)
    World,
    barrier,
    broadcast,
    current,
    gather_to_main,
    launched,
    share,
    start,
    stop,
)


def device_of(world: World, device: str) -> torch.device:
    """Each rank's device: ``cuda:LOCAL_RANK`` on GPUs, the CPU otherwise."""
    if device.startswith("cuda") and world.distributed:
        return torch.device("cuda", world.local_rank)
    return torch.device(device)


def sum_over_ranks(world: World, values: list[float]) -> list[float]:
    """Element-wise sums of every rank's ``values`` (in float64; on the GPU under nccl)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


ONE_PROCESS = World()


def rank_part(items: Sequence, world: World) -> list:
    """This rank's contiguous part of a global batch; parts differ in length by at most one.

    A global batch shorter than the world (only the last one of an epoch can be) is first
    wrapped around onto its own start, so no rank is left without a batch: those few samples
    count twice in that step.
    """
    items = list(items)
    if not world.distributed:
        return items
    if len(items) < world.size:
        items = [items[i % len(items)] for i in range(world.size)]
    return split_evenly(items, world)


def split_evenly(keys: Sequence, world: World) -> list:
    """This rank's contiguous share of a list (evaluation: every sample exactly once)."""
    return list(keys[slice(*share(len(keys), world.rank, world.size))])
