"""Streaming a split for training: shards read in sequence, split across DataLoader workers and
distributed ranks without duplicates, with seeded shard shuffling and a sample shuffle buffer.

Under DDP (more than one rank) every reader must yield as many samples as every other, or a
rank runs out of batches first and the others wait for it forever: the readers then take
contiguous, near-equal ranges of the (shuffled) shard sequence instead of whole shards, and the
shorter ones repeat their first sample once to reach the same count (:func:`equal_ranges`)."""

from __future__ import annotations

import math
import os
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from .reader import CacheReader, Sample
from .world import share


def rank_and_world(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """Explicit values first, then an initialised torch.distributed, then torchrun's variables."""
    if rank is not None and world_size is not None:
        return rank, world_size
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def consumer_slot(rank: int, world_size: int) -> tuple[int, int]:
    """This (rank, DataLoader worker) pair's number among all readers of the split."""
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * workers + worker, world_size * workers


def assign(num_shards: int, order: list[int], slot: int, slots: int) -> list[tuple[int, int, int]]:
    """What one reader reads: ``(shard, keep_every, keep_offset)`` triples.

    With at least as many shards as readers, whole shards are dealt out round-robin. With fewer,
    every reader walks every shard and keeps every ``slots``-th sample, so no reader sits idle.
    """
    if num_shards >= slots:
        return [(shard, 1, 0) for shard in order[slot::slots]]
    return [(shard, slots, slot) for shard in order]


def equal_ranges(
    counts: list[int], order: list[int], slot: int, slots: int
) -> list[tuple[int, list[int]]]:
    """What one of ``slots`` readers reads so that all read the same number of samples:
    ``(shard, rows)`` pairs covering its contiguous range of the shards taken in ``order``,
    plus its first sample once more when its range is one shorter than ``ceil(total / slots)``
    (with fewer samples than readers, a reader's range is one sample, shared)."""
    total = sum(counts[shard] for shard in order)
    if total == 0:
        return []
    first, stop = share(total, slot, slots)
    if stop == first:
        first, stop = slot % total, slot % total + 1
    plan, offset = [], 0
    for shard in order:
        low, high = max(first, offset), min(stop, offset + counts[shard])
        if low < high:
            plan.append((shard, list(range(low - offset, high - offset))))
        offset += counts[shard]
    if stop - first < math.ceil(total / slots):
        plan.append((plan[0][0], plan[0][1][:1]))
    return plan


class StreamingDataset(IterableDataset):
    """Yields decoded samples (float32 by default) of one split of a cache."""

    def __init__(
        self,
        cache_dir: str | Path,
        split: str,
        fields: Iterable[str] | None = None,
        as_float32: bool = True,
        shuffle: bool = False,
        buffer_size: int = 1000,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        group: str | None = None,
    ):
        """``group``: the column group read with the base (default: the cache's first)."""
        super().__init__()
        self.cache_dir, self.split = Path(cache_dir), split
        self.fields = None if fields is None else list(fields)
        self.as_float32, self.shuffle = as_float32, shuffle
        self.buffer_size, self.seed, self.epoch = buffer_size, seed, 0
        self.rank, self.world_size, self.group = rank, world_size, group
        reader = CacheReader(self.cache_dir, as_float32, group=group).split(split, self.fields)
        self.num_samples = len(reader)

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch so the shard order and the buffer change between epochs."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Sample]:
        rank, world_size = rank_and_world(self.rank, self.world_size)
        slot, slots = consumer_slot(rank, world_size)
        cache = CacheReader(self.cache_dir, self.as_float32, group=self.group)
        split = cache.split(self.split, self.fields)
        order = list(range(len(split.shards)))
        if self.shuffle:
            random.Random(f"{self.seed}/{self.epoch}").shuffle(order)
        if world_size > 1:
            counts = [shard.count for shard in split.shards]
            samples = self._read_rows(split, equal_ranges(counts, order, slot, slots))
        else:
            samples = self._read(split, assign(len(order), order, slot, slots))
        if self.shuffle and self.buffer_size > 1:
            samples = shuffle_buffer(
                samples, self.buffer_size, random.Random(f"{self.seed}/{self.epoch}/{slot}")
            )
        yield from samples

    @staticmethod
    def batches_per_rank(
        shard_counts: list[int], batch_size: int, workers: int, world_size: int
    ) -> int:
        """Batches each rank's DataLoader yields per epoch under DDP (the same on every rank)."""
        readers = max(workers, 1)
        per_reader = math.ceil(sum(shard_counts) / (readers * world_size))
        return readers * math.ceil(per_reader / batch_size)

    @staticmethod
    def _read_rows(split, plan: list[tuple[int, list[int]]]) -> Iterator[Sample]:
        for shard, rows in plan:
            yield from split.iter_rows(shard, rows)

    @staticmethod
    def _read(split, plan: list[tuple[int, int, int]]) -> Iterator[Sample]:
        seen = 0
        for shard, every, offset in plan:
            if every == 1:
                yield from split.iter_shard(shard)
                continue
            count = split.shards[shard].count
            yield from split.iter_rows(
                shard, [r for r in range(count) if (seen + r) % every == offset]
            )
            seen += count


def shuffle_buffer(samples: Iterator[Sample], size: int, rng: random.Random) -> Iterator[Sample]:
    """Keep ``size`` samples in memory and emit a random one as each new one arrives."""
    buffer: list[Sample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        pick = rng.randrange(size)
        buffer[pick], sample = sample, buffer[pick]
        yield sample
    rng.shuffle(buffer)
    yield from buffer
