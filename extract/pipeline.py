"""The extraction loop of one split: read (DataLoader workers) -> encode -> write (a thread).

Each stage is timed. The writer thread overlaps the next batch's encoding; at most one batch
waits for it, so memory stays bounded. When the teachers run on the CPU, decoding workers and the
writer thread take cores from them (on 2 cores the overlapped loop is slower: BENCHMARKS.md), so
by default the loop then runs its stages one after another in the main process, unless cores are
free beside the teachers' threads (:func:`free_cores`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from extract.datasets.base import Record
from extract.encode import encode_batch
from extract.loader import Item, RecordImages, collate, decode_on_device, image_key
from extract.plan import Plan
from extract.resize import clipped_count
from extract.store import FieldSpec, SplitWriter, decode
from extract.store.means import FieldMeans

log = logging.getLogger(__name__)


@dataclass
class LoopOptions:
    batch_size: int = 32
    workers: int | None = None  # image decoders; None: 0 unless overlapped, else up to 4
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    on_error: str = "skip"  # or "fail"
    # decoding workers and a writer thread; None: when the teachers are not on the CPU, or when
    # cores are free beside their threads (on 2 cores, workers slowed the teachers by 28%)
    overlap: bool | None = None
    decode: str = "auto"  # JPEGs: "gpu" (nvJPEG on the teachers' GPU), "cpu" (PIL in workers)
    fast_decode: bool = False  # PIL: JPEGs decoded at a reduced DCT scale (not the exact pixels)

    @property
    def overlapped(self) -> bool:
        if self.overlap is not None:
            return self.overlap
        return self.device.type != "cpu" or free_cores() > 0

    @property
    def device_decode(self) -> bool:
        """Whether JPEGs are decoded on the teachers' GPU (``auto``: whenever they run on one)."""
        if self.decode == "gpu" and self.device.type != "cuda":
            raise ValueError("--decode gpu needs the teachers on a GPU (--device cuda)")
        return self.decode == "gpu" or (self.decode == "auto" and self.device.type == "cuda")

    def decoders(self) -> int:
        if self.workers is not None:
            return self.workers
        if not self.overlapped:
            return 0
        cores = free_cores() if self.device.type == "cpu" else usable_cores()
        return max(1, min(4, cores))


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def free_cores() -> int:
    """Cores this process may use beyond the teachers' CPU threads (torch's intra-op pool), on
    its share of the node: torchrun's ranks on one node share its cores."""
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(0, (usable_cores() - ranks * torch.get_num_threads()) // ranks)


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
    decode_fallbacks: int = 0  # device decoding: images PIL decoded instead of nvJPEG

    def add(self, other: Timing) -> None:
        for name in ("read_s", "encode_s", "write_s", "samples", "skipped", "decode_fallbacks"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        wall = self.read_s + self.encode_s + self.write_s
        rate = self.samples / self.encode_s if self.encode_s else 0.0
        return {**self.__dict__, "encode_samples_per_s": round(rate, 2), "busy_s": round(wall, 3)}


class ShardFiller:
    """Writes batches into their planned shards, in input order, through one writer per part of
    the cache (the base, a column group: each with its fields): opens each shard at its first
    input, finishes it (with its sums for the means, if asked) after its last.

    ``expected_skips`` (adding a group to a finished base): the samples the base skipped, which
    the group skips alike; any other sample that cannot be read is an error, since the group's
    rows must be the base's."""

    def __init__(
        self,
        parts: list[SplitWriter],
        plan: Plan,
        with_means: bool,
        expected_skips: dict[str, str] | None = None,
    ):
        self.parts, self.plan, self.with_means = parts, plan, with_means
        self.size = parts[0].plan.size
        self.expected_skips = expected_skips
        self.number: int | None = None
        self.means: list[FieldMeans | None] = []
        self.finished: list[int] = []

    def write(self, items: list[Item], arrays: list[dict]) -> float:
        """Write a batch (skipped items in their place); returns the seconds spent."""
        started = time.perf_counter()
        produced = iter(arrays)
        for item in items:
            self.enter(item.position // self.size)
            if item.error is not None:
                log.warning("skipping %s: %s", item.record.key, item.error)
                for writer in self.parts:
                    writer.skip(item.record.key, item.error, item.position, item.record.image)
            else:
                self._write(item, next(produced))
            if item.position + 1 == self.parts[0].plan.bounds(self.number)[1]:
                self.finish()  # its last input: the shard is done (and survives a crash now)
        return time.perf_counter() - started

    def _write(self, item: Item, arrays: dict) -> None:
        meta, image = sample_meta(item, self.plan), image_identity(item.record)
        stored = {}
        for writer in self.parts:
            mine = {name: arrays[name] for name in writer.spec.fields}
            stored.update(writer.write(item.record.key, mine, meta, item.position, image))
        if self.with_means:  # over the stored values, with any the base has (region counts)
            values = {**arrays, **decoded(self.plan.fields, stored)}
            for means in self.means:
                means.add(values)

    def enter(self, number: int) -> None:
        if number == self.number:
            return
        self.finish()
        for writer in self.parts:
            writer.begin(number)
        self.number = number
        if self.with_means:
            self.means = [FieldMeans(list(writer.spec.fields)) for writer in self.parts]

    def finish(self) -> None:
        if self.number is None:
            return
        for part, writer in enumerate(self.parts):
            means = self.means[part] if self.with_means else None
            writer.end(None if means is None else lambda stem, m=means: m.save(means_path(stem)))
        self.finished.append(self.number)
        self.number = None


MEANS_SUFFIX = ".means.npz"


def means_path(stem: Path) -> Path:
    """Where a finished shard of the means split keeps its sums (removed once the cache is done)."""
    return stem.with_name(stem.name + MEANS_SUFFIX)


def extract_split(
    plan: Plan,
    adapter,
    records: list[Record],
    parts: list[SplitWriter],
    options: LoopOptions,
    numbers: list[int],
    with_means: bool = False,
    on_progress: Callable[[int], None] | None = None,
    expected_skips: dict[str, str] | None = None,
) -> Timing:
    """Encode and write the planned shards ``numbers`` of a split (each part's writer has the
    same plan): see :class:`ShardFiller` for ``expected_skips``.

    Batches start at each shard's first position, so a shard's bytes depend only on its own
    records, whichever process writes it and whatever was written before (kernels may pick
    other algorithms for other batch shapes, which would change the bytes).
    """
    keys = [
        image_key(encoder.preprocess, plan.options.resize) for encoder in (plan.image, plan.student)
    ]
    dataset = RecordImages(adapter, records, 0, keys, options.device_decode, options.fast_decode)
    batches = [
        batch
        for number in numbers
        for batch in aligned_batches(*parts[0].plan.bounds(number), options.batch_size)
    ]
    loader = DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=options.decoders() if batches else 0,
        collate_fn=collate,
    )
    filler = ShardFiller(parts, plan, with_means, expected_skips)
    timing = Timing()
    pending: Future | None = None
    with writer_pool(options) as pool:
        ticks = time.perf_counter()
        for items in loader:
            now = time.perf_counter()
            timing.read_s += now - ticks
            if expected_skips is not None:
                check_skips(items, expected_skips)
            if options.device_decode:  # may find more unreadable images
                readable = [item for item in items if item.error is None]
                timing.decode_fallbacks += decode_on_device(readable, keys, options.device)
            good = [item for item in items if item.error is None]
            failed = [item for item in items if item.error is not None]
            unexpected = [i for i in failed if str(i.record.key) not in (expected_skips or {})]
            if unexpected and options.on_error == "fail":
                raise ValueError(
                    f"{unexpected[0].record.key}: {unexpected[0].error.rstrip('.')}; fix or "
                    "remove the file, "
                    "or run with --on-error skip to skip unreadable samples (the manifest counts "
                    "them)"
                )
            arrays = encode_batch(plan, good, options.device) if good else []
            timing.encode_s += time.perf_counter() - now
            if pending is not None:
                timing.write_s += pending.result()
            pending = pool.submit(filler.write, items, arrays)
            timing.samples += len(items) - len(failed)
            timing.skipped += len(failed)
            if on_progress is not None:
                on_progress(len(items))
            ticks = time.perf_counter()
        if pending is not None:
            timing.write_s += pending.result()
    filler.finish()
    for number in numbers:  # a planned range with no input (an empty split) is an empty shard
        if number not in filler.finished:
            filler.enter(number)
            filler.finish()
    return timing


def check_skips(items: list[Item], expected: dict[str, str]) -> None:
    """Skip what the base skipped, and nothing else (a group's rows are the base's rows)."""
    for item in items:
        key = str(item.record.key)
        if key in expected:
            item.error = f"skipped by the base: {expected[key]}"
        elif item.error is not None:
            raise ValueError(
                f"{key}: {item.error}; the base holds this sample, so a column group cannot skip "
                "it: restore the file as it was when the cache was extracted"
            )


def aligned_batches(start: int, stop: int, size: int) -> list[list[int]]:
    """Positions ``start`` to ``stop`` in batches of ``size`` that begin at ``start``."""
    return [list(range(a, min(a + size, stop))) for a in range(start, stop, size)]


def image_identity(record: Record) -> str:
    """What the per-image fields depend on: the image file and the boxes pooled over it."""
    if not record.boxes:
        return record.image
    return f"{record.image} {json.dumps(record.boxes)}"


def sample_meta(item: Item, plan: Plan) -> dict:
    meta = {**item.record.meta, "image": item.record.image, "texts": item.record.texts}
    meta["image_sha256"] = item.image_sha256  # extract.verify --inputs finds edited images
    boxes = item.record.boxes or []
    if "regions" in plan.fields and len(boxes) > plan.options.max_regions:
        meta["regions_truncated"] = len(boxes) - plan.options.max_regions  # never silent
    size = item.original_size  # none in the size estimate before anything is decoded
    clipped = (
        clipped_count(boxes[: plan.options.max_regions], *size, plan.options.resize) if size else 0
    )
    if clipped:
        meta["boxes_clipped"] = clipped  # --resize crop cut them
    return meta


def decoded(fields: dict[str, FieldSpec], stored: dict) -> dict[str, np.ndarray]:
    """The values as a reader will see them, for exact means: int8 dequantised, ragged fields
    padded, the others as stored (the means sum them in float64, where float16 and float32
    values are exact). ``stored``: ``{field: (values, scale)}``, as written or read back."""
    out = {}
    for name, spec in fields.items():
        values, scale = stored[name]
        if spec.has_scale or spec.lengths:
            lengths = stored[spec.lengths][0] if spec.lengths else None
            values = decode(spec, values, scale, spec.has_scale, lengths)
        out[name] = values
    return out
