"""One extraction, start to finish: dataset -> plan -> shards per split -> means, shared data,
indices -> manifest. The CLI (:mod:`extract.run`) only parses options and shows progress."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extract.datasets import open_dataset
from extract.job import Job, add_to_cache, new_cache
from extract.pipeline import MEANS_SUFFIX, LoopOptions, Timing, extract_split, means_path
from extract.plan import PlanOptions
from extract.retry import reopen_skipped
from extract.store import (
    CacheBuilder,
    CacheReader,
    Manifest,
    ShardLimits,
    ShardPlan,
    SplitWriter,
)
from extract.store.lock import WriterLock
from extract.store.means import FieldMeans
from extract.store.world import barrier, broadcast, current, gather_to_main

log = logging.getLogger(__name__)

# progress(total, initial, split, bytes_per_sample) -> an object with update(n) and close();
# None shows nothing
ProgressFactory = Callable[[int, int, str], Any]


@dataclass
class ExtractConfig:
    dataset: str
    root: Path
    out: Path
    splits: list[str] | None = None
    plan: PlanOptions = field(default_factory=PlanOptions)
    format: str = "wds"
    limit: int | None = None
    dataset_options: dict[str, Any] = field(default_factory=dict)
    limits: ShardLimits = field(default_factory=ShardLimits)
    loop: LoopOptions = field(default_factory=LoopOptions)
    build_indices: bool = True
    index_memory_budget: int = 4 << 30
    group: str | None = None  # the teachers' column group (default: named after their ids)
    add_teachers: bool = False  # add plan.teachers as a new group to the finished cache at out
    retry_skipped: bool = False  # rewrite the shards of skipped samples whose images read now
    split_roles: dict[str, str] = field(
        default_factory=dict
    )  # split -> train|val|test (else by name)


@dataclass
class ExtractResult:
    manifest: Manifest | None  # None on ranks other than 0 (rank 0 writes the manifest)
    cache_hit: bool
    timing: dict[str, Any]


def run_extraction(config: ExtractConfig, progress: ProgressFactory | None = None) -> ExtractResult:
    """Extract a cache (or, with ``add_teachers``, a new teachers' group of a finished one);
    under ``torchrun`` every rank writes its share of each split's shards and rank 0 then adds
    the means, the shared data, the indices and the manifest. Other ranks return a result
    without a manifest."""
    started = time.perf_counter()
    world = current()
    adapter = open_dataset(config.dataset, config.root, **config.dataset_options)
    job = add_to_cache(config, adapter) if config.add_teachers else new_cache(config, adapter)
    if config.retry_skipped and world.main:
        with WriterLock(config.out):
            reopen_skipped(config.out, job, adapter)
    barrier(world)
    with contextlib.ExitStack() as held:  # rank 0's writer lock, until the cache is done
        opened = open_writers(config.out, job, world, held)
        if opened is None:
            manifest = CacheReader(config.out).manifest
            return ExtractResult(manifest, True, manifest.groups[job.group.name].timing)
        builder, parts, missing = opened
        for encoder in job.plan.encoders:
            encoder.to(config.loop.device)
        timing = {"splits": {}, "setup_s": round(time.perf_counter() - started, 3)}
        bytes_per_sample = sum(field.bytes_per_sample for field in job.plan.fields.values())
        held.enter_context(no_room_reported(config.out, job, bytes_per_sample))  # to the end
        with aborted_on_failure(parts):
            total, done = write_splits(
                job, adapter, parts, missing, config, progress, timing, bytes_per_sample
            )
        ranks = gather_to_main(world, {"total": total.as_dict(), "splits": timing["splits"]})
        ranks_done = gather_to_main(world, done)
        if not world.main:
            return ExtractResult(None, False, timing)
        for split, writers in parts.items():
            for rank_done in ranks_done:
                for writer, finished in zip(writers, rank_done[split], strict=True):
                    writer.add_finished(finished)
            for writer in writers:
                writer.close()
        for writer in parts[job.means_split]:
            store_means(builder, job, writer)
        add_task_data(builder, job)
        indices, index_s = build_indices(builder, job, config) if config.build_indices else ({}, 0)
        timing.update(
            total=total.as_dict(),
            index_s=round(index_s, 3),
            wall_s=round(time.perf_counter() - started, 3),
        )
        if world.distributed:
            timing["ranks"] = ranks
        runtime = {
            "batch_size": config.loop.batch_size,
            "workers": config.loop.decoders(),
            "overlapped": config.loop.overlapped,
            "device": str(config.loop.device),
            "decode": "gpu" if config.loop.device_decode else "cpu",
            "world_size": world.size,
            "shard_positions": job.positions,
            "on_error": config.loop.on_error,
            "torch": torch.__version__,
            "adapter_skipped": getattr(adapter, "skipped", []),
        }
        manifest = builder.finish(
            runtime=runtime,
            timing=timing,
            group_indices={job.group.name: indices},
            group_timing={**timing, "runtime": runtime},
        )
        for writer in parts[job.means_split]:
            for stem in writer.stems():
                means_path(stem).unlink(missing_ok=True)
        return ExtractResult(manifest, False, timing)


def write_splits(
    job: Job, adapter, parts, missing, config, progress, timing: dict, bytes_per_sample: int
):
    """This rank's missing shards of every split; returns the total timing and, per split and
    part, the records of the shards it wrote (``bytes_per_sample``: for the progress bars)."""
    world = current()
    total = Timing()
    done = {}
    for split in job.splits:
        writers = parts[split]
        mine = missing[split][world.rank :: world.size]
        bar = None
        if progress is not None and world.main:
            count = sum(len(range(*writers[0].plan.bounds(n))) for n in mine)
            bar = progress(count, 0, split, bytes_per_sample)
        on_progress = None if bar is None else bar.update
        try:
            split_timing = extract_split(
                job.plan, adapter, job.records[split], writers, config.loop, mine,
                split == job.means_split, on_progress, job.expected_skips.get(split),
            )  # fmt: skip
        finally:  # closed before any error is printed, so the error starts its own line
            if bar is not None:
                bar.close()
        timing["splits"][split] = split_timing.as_dict()
        total.add(split_timing)
        done[split] = [{n: writer.finished[n] for n in mine} for writer in writers]
    return total, done


@contextlib.contextmanager
def aborted_on_failure(parts: dict[str, list[SplitWriter]]) -> Iterator[None]:
    """On any failure, the open shards' temporary files are removed (finished shards stay, and a
    rerun resumes after them)."""
    try:
        yield
    except BaseException:
        for writers in parts.values():
            for writer in writers:
                writer.abort()
        raise


NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


class NoRoomError(ValueError):
    """The cache's disk (or the file size limit) has no room for the next shard."""


@contextlib.contextmanager
def no_room_reported(out: Path, job: Job, bytes_per_sample: int) -> Iterator[None]:
    """A full disk as one line: where, how much is free, how much a shard needs, what to do."""
    try:
        yield
    except OSError as error:
        if error.errno not in NO_ROOM:
            raise
        shard = job.positions * bytes_per_sample
        if error.errno == errno.EFBIG:
            room = "over this process's file size limit (ulimit -f): raise it, or lower --shard-mib"
        else:
            free = shutil.disk_usage(out).free
            room = (
                f"{free / 2**20:.1f} MiB are free there: free space (or move the cache to a disk "
                "with room and point --out there)"
            )
        raise NoRoomError(
            f"{error.filename or out}: no room to write the cache ({os.strerror(error.errno)}); "
            f"a shard needs up to {shard / 2**20:.1f} MiB, {room}; then run the same command "
            "again: it resumes after the finished shards"
        ) from error


def open_writers(
    out: Path, job: Job, world, held: contextlib.ExitStack
) -> tuple[CacheBuilder, dict[str, list[SplitWriter]], dict[str, list[int]]] | None:
    """The cache builder, per split the planned writers of the parts to write (the base unless
    it is finished, and the teachers' group), and the shards each split still needs; or None
    when everything asked for is there.

    Rank 0 alone starts the cache, takes the writer lock (into ``held``: another job writing
    the same directory is refused), finds the finished shards (those of the means split only
    with their sums beside them), removes unfinished shards' files, and tells every rank which
    shards are missing, so all deal them out alike."""
    builder = None
    if world.main:
        probe = CacheBuilder(out, job.spec, owner=False, groups=[job.group])  # writes nothing
        refuse_unasked_group(probe, job)
        if not probe.complete:  # the lock before anything is written: one writer at a time
            held.enter_context(WriterLock(out))
            builder = CacheBuilder(out, job.spec, groups=[job.group])
    if broadcast(world, builder is None if world.main else None):
        return None
    if builder is None:
        barrier(world)  # rank 0 has cleaned up
        builder = CacheBuilder(out, job.spec, owner=False, groups=[job.group])
    parts = {}
    for split, records in job.records.items():
        options = dict(
            plan=ShardPlan(job.positions, len(records)),
            clean=world.main,
            inputs=[str(record.key) for record in records],
            beside=MEANS_SUFFIX if split == job.means_split else None,
        )
        parts[split] = [] if builder.base_complete else [builder.split(split, **options)]
        parts[split].append(builder.split(split, **options, group=job.group.name))
    if world.main:
        barrier(world)
    missing = None
    if world.main:
        missing = {
            split: sorted(set().union(*(writer.missing() for writer in writers)))
            for split, writers in parts.items()
        }
    return builder, parts, broadcast(world, missing)


def refuse_unasked_group(probe: CacheBuilder, job: Job) -> None:
    """New teachers beside a finished cache only with --add-teachers (checked before anything
    is written into the cache)."""
    if probe.base_complete and not job.adding and probe.new_groups:
        teachers = ",".join(dict.fromkeys(job.group.config["teachers"]))  # CLIP: one id, 2 towers
        raise ValueError(
            f"{probe.cache_dir} holds a finished cache with the teachers' group(s) "
            f"{list(probe.existing.groups)}; to add {job.group.name!r} beside them, run the same "
            f"command with --add-teachers {teachers} (or use another --out)"
        )


def store_means(builder: CacheBuilder, job: Job, writer: SplitWriter) -> None:
    """The means split's per-shard sums of one part's fields, added in shard order (the same
    whoever wrote them), stored with that part (the base, or the group)."""
    means = FieldMeans(list(writer.spec.fields))
    group = None if writer.with_meta else job.group.name
    for stem in writer.stems():
        path = means_path(stem)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the shard's sums for the means are gone; delete "
                f"{builder.cache_dir} and extract again"
            )
        means.merge(FieldMeans.load(means.names, path))
    for name, mean in means.result().items():
        builder.put_shared(f"mean_{name}", mean, group)


def add_task_data(builder: CacheBuilder, job: Job) -> None:
    """Data shared by all samples: the VQA answer vocabulary (with the base) and its text
    teacher's embeddings (with the group)."""
    vocab = job.spec.task.get("answer_vocab")
    if not vocab:
        return
    if not builder.base_complete:
        builder.put_shared("answer_vocab", list(vocab))
    plan = job.plan
    embeddings = []
    with torch.inference_mode():
        for start in range(0, len(vocab), 256):
            ids, lengths = plan.text.tokenize(list(vocab[start : start + 256]))
            device = next(iter(plan.text.model.parameters())).device
            out = plan.text.encode(ids.to(device), lengths.to(device))
            embeddings.append(out["global"].float().cpu().numpy())
    embeddings = np.concatenate(embeddings).astype(np.float32)
    builder.put_shared("answer_emb", embeddings, job.group.name)


def build_indices(builder: CacheBuilder, job: Job, config: ExtractConfig) -> tuple[dict, float]:
    """FAISS indices over the group's pooled image and text embeddings of every split."""
    from extract.index import build_keyed_index

    started = time.perf_counter()
    preview = builder.preview()
    reader = CacheReader(builder.cache_dir, True, preview, group=job.group.name)
    indices = {}
    for split in reader.splits:
        keys, images, text_keys, texts = [], [], [], []
        for sample in reader.split(split, fields=["img_emb", "txt_emb"]):
            keys.append(sample["__key__"])
            images.append(sample["img_emb"])
            text_keys += [f"{sample['__key__']}#{c}" for c in range(len(sample["txt_emb"]))]
            texts.append(sample["txt_emb"])
        if not keys:
            continue
        for modality, names, vectors in (
            ("image", keys, np.stack(images)),
            ("text", text_keys, np.concatenate(texts)),
        ):
            index, info = build_keyed_index(
                names, vectors, memory_budget_bytes=config.index_memory_budget
            )
            paths = index.save(reader.indices_dir, f"{split}-{modality}")
            info["files"] = [asdict(builder.record_file(path, job.group.name)) for path in paths]
            indices[f"{split}/{modality}"] = info
    return indices, time.perf_counter() - started
