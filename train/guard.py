"""What the trainer does not take on trust: the cache's files are checked against the manifest
before the first epoch, every member it reads against its checksum, and every batch's values and
loss must be finite.

``--check-cache read`` (the default) checks, before training, that every file the run reads is
there at its recorded size, and the sha256 of the small ones read whole (offset indices, shared
arrays); the shards' bytes are checked as they are read, each tar member against its CRC-32 in
the offset index and each HDF5 chunk against its Fletcher-32 checksum, so nothing is read twice
and a run that distils only text never reads an image grid. ``full`` also reads every shard
(and FAISS file) whole against its sha256 before training, tar headers and unread fields
included; ``off`` checks nothing before training (the members are still checked as read).

A run on a damaged cache must not end in ``results.json`` as if nothing happened: one flipped
byte, or one NaN written with a matching checksum, stops it with one line naming the file, or the
sample key and the field, and the run leaves no success artifact behind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from extract.store import CacheReader, check_files, check_sizes, files_read
from train import distributed
from train.distributed import World

CHECK_MODES = ("read", "full", "off")
READ_AS_USED = (".tar", ".h5", ".faiss")  # checked as read (members, chunks) or not read at all


class NonFiniteError(ValueError):
    """A batch held NaN or infinite values, or the loss was not finite."""


def check_cache(
    cache: CacheReader,
    splits: Iterable[str],
    mode: str,
    world: World,
    progress: Callable[[int, str], object] | None = None,
) -> None:
    """The files the run reads (``splits`` of the base and of the run's column group, the shared
    data, the indices): sizes, and sha256s as ``mode`` says (see the module's docstring). Ranks
    share the files out and all raise when any file is bad."""
    if mode not in CHECK_MODES:
        raise ValueError(f"--check-cache {mode!r}: use one of {', '.join(CHECK_MODES)}")
    if mode == "off":
        return
    files = files_read(cache, splits)
    as_used = [mode != "full" and record.name.endswith(READ_AS_USED) for _, record in files]
    sized = [f for f, later in zip(files, as_used, strict=True) if later]
    hashed = [f for f, later in zip(files, as_used, strict=True) if not later]

    def mine(part: list) -> list:
        return part[slice(*distributed.share(len(part), world.rank, world.size))]

    problems = check_sizes(mine(sized))
    bar = progress(len(mine(hashed)), "checking the cache") if progress and world.main else None
    problems += check_files(mine(hashed), on_file=(lambda _: bar.update(1)) if bar else None)
    if bar is not None:
        bar.close()
    parts = distributed.gather_to_main(world, problems)
    problems = distributed.broadcast(world, [p for part in parts for p in part] if parts else None)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise ValueError(
            f"{cache.cache_dir}: {problems[0]}{more}; the cache is damaged, nothing was trained: "
            f"python -m extract.verify --cache {cache.cache_dir} lists every problem"
        )


def nonfinite_value(batch: dict, split: str) -> str | None:
    """The first sample and field of ``batch`` holding NaN or infinity, as a message."""
    for name, values in batch.items():
        if not (isinstance(values, torch.Tensor) and values.is_floating_point()):
            continue
        bad = ~torch.isfinite(values.reshape(len(values), -1)).all(dim=1)
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            return (
                f"sample {batch['keys'][row]!r} of split {split!r}: field {name!r} holds NaN or "
                "infinite values; the cache is damaged: check it with python -m extract.verify"
            )
    return None


def nonfinite_loss(loss: float, epoch: int, step: int, keys: list[str]) -> str | None:
    if math.isfinite(loss):
        return None
    return (
        f"the loss is {loss} at epoch {epoch}, batch {step} (first sample {keys[0]!r}) with "
        "finite inputs and targets: training diverged; lower --lr or raise --warmup"
    )


def stop_on(problem: str | None, world: World) -> None:
    """Raise :class:`NonFiniteError` on every rank when any rank found a problem (a lone rank
    raising would leave the others waiting for it in the gradient all-reduce)."""
    found = problem is not None
    if world.distributed:
        found = distributed.sum_over_ranks(world, [float(found)])[0] > 0
    if found:
        raise NonFiniteError(
            problem or "another rank found non-finite values or loss; its line names them"
        )
