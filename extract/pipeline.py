"""The extraction loop of one split: read (DataLoader workers) -> encode -> write (a thread).

Each stage is timed. The writer thread overlaps the next batch's encoding; at most one batch
waits for it, so memory stays bounded. When the teachers run on the CPU, decoding workers and the
writer thread take cores from them (on 2 cores the overlapped loop is slower: BENCHMARKS.md), so
by default the loop then runs its stages one after another in the main process.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader

from extract.datasets.base import Record
from extract.encode import encode_batch
from extract.loader import Item, RecordImages, collate, image_key
from extract.means import FieldMeans
from extract.plan import Plan
from extract.store import SplitWriter, decode

log = logging.getLogger(__name__)


@dataclass
class LoopOptions:
    batch_size: int = 32
    workers: int | None = None  # image decoders; None: 0 unless overlapped, else min(4, CPUs)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    on_error: str = "skip"  # or "fail"
    overlap: bool | None = None  # writer thread; None: only when the teachers are not on the CPU

    @property
    def overlapped(self) -> bool:
        return self.device.type != "cpu" if self.overlap is None else self.overlap

    def decoders(self) -> int:
        if self.workers is not None:
            return self.workers
        return min(4, os.cpu_count() or 1) if self.overlapped else 0


class InlinePool:
    """The writer "thread" of a CPU run: each write runs at once, in the caller's thread."""

    def __enter__(self) -> InlinePool:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, function: Callable[..., float], *args) -> Future:
        future: Future = Future()
        future.set_result(function(*args))
        return future


def writer_pool(options: LoopOptions) -> ThreadPoolExecutor | InlinePool:
    if options.overlapped:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="cache-writer")
    return InlinePool()


@dataclass
class Timing:
    read_s: float = 0.0
    encode_s: float = 0.0
    write_s: float = 0.0
    samples: int = 0
    skipped: int = 0

    def add(self, other: Timing) -> None:
        for name in ("read_s", "encode_s", "write_s", "samples", "skipped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        wall = self.read_s + self.encode_s + self.write_s
        rate = self.samples / self.encode_s if self.encode_s else 0.0
        return {**self.__dict__, "encode_samples_per_s": round(rate, 2), "busy_s": round(wall, 3)}


def extract_split(
    plan: Plan,
    adapter,
    records: list[Record],
    writer: SplitWriter,
    options: LoopOptions,
    means: FieldMeans | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Timing:
    """Encode and write ``records[writer.resume_position:]``.

    Finished shards are not decoded again, except the few records before the resume position
    that share its batch: batches start at multiples of the batch size in the whole split, so a
    resumed run encodes exactly the batches an uninterrupted one does (kernels may pick other
    algorithms for other batch shapes, which would change the bytes). Those records are encoded
    and not written.
    """
    start = writer.resume_position
    first = start - start % options.batch_size
    keys = [image_key(encoder.preprocess) for encoder in (plan.image, plan.student)]
    dataset = RecordImages(adapter, records[first:], first, keys)
    loader = DataLoader(
        dataset,
        batch_sampler=aligned_batches(first, len(records), options.batch_size),
        num_workers=options.decoders(),
        collate_fn=collate,
    )
    timing = Timing()
    pending: Future | None = None
    with writer_pool(options) as pool:
        ticks = time.perf_counter()
        for items in loader:
            now = time.perf_counter()
            timing.read_s += now - ticks
            good = [item for item in items if item.error is None]
            failed = [item for item in items if item.error is not None and item.position >= start]
            if failed and options.on_error == "fail":
                raise ValueError(
                    f"{failed[0].record.key}: {failed[0].error}; fix or remove the file, or run "
                    "with --on-error skip to skip unreadable samples (the manifest counts them)"
                )
            arrays = encode_batch(plan, good, options.device) if good else []
            timing.encode_s += time.perf_counter() - now
            if pending is not None:
                timing.write_s += pending.result()
            pending = pool.submit(write_batch, writer, plan, items, arrays, means, start)
            new = [item for item in items if item.position >= start]
            timing.samples += len(new) - len(failed)
            timing.skipped += len(failed)
            if on_progress is not None:
                on_progress(len(new))
            ticks = time.perf_counter()
        if pending is not None:
            timing.write_s += pending.result()
    return timing


def aligned_batches(start: int, stop: int, size: int) -> list[list[int]]:
    """Batches (as indices into ``records[start:]``) that begin at multiples of ``size`` in the
    whole split, so a resumed run encodes the same batches as an uninterrupted one."""
    edges = [start, *range((start // size + 1) * size, stop, size), stop]
    return [
        list(range(a - start, b - start)) for a, b in zip(edges, edges[1:], strict=False) if b > a
    ]


def write_batch(
    writer: SplitWriter,
    plan: Plan,
    items: list[Item],
    arrays: list[dict],
    means: FieldMeans | None,
    start: int = 0,
) -> float:
    """Write a batch in input order (skipped items in their place), leaving out the items before
    ``start`` (already in finished shards); returns the seconds spent."""
    started = time.perf_counter()
    produced = iter(arrays)
    for item in items:
        if item.position < start:
            if item.error is None:
                next(produced)
            continue
        if item.error is not None:
            log.warning("skipping %s: %s", item.record.key, item.error)
            writer.skip(item.record.key, item.error, item.position)
            continue
        stored = writer.write(
            item.record.key, next(produced), sample_meta(item, plan), item.position
        )
        if means is not None:
            means.add(decoded(plan, stored))
    return time.perf_counter() - started


def sample_meta(item: Item, plan: Plan) -> dict:
    meta = {**item.record.meta, "image": item.record.image, "texts": item.record.texts}
    boxes = item.record.boxes or []
    if "regions" in plan.fields and len(boxes) > plan.options.max_regions:
        meta["regions_truncated"] = len(boxes) - plan.options.max_regions  # never silent
    return meta


def decoded(plan: Plan, stored: dict) -> dict[str, np.ndarray]:
    """The values as a reader will see them, for exact means: int8 dequantised, the others as
    stored (the means sum them in float64, where float16 and float32 values are exact)."""
    return {
        name: decode(spec, *stored[name], as_float32=True) if spec.has_scale else stored[name][0]
        for name, spec in plan.fields.items()
    }
