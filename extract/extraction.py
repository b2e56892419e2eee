"""One extraction, start to finish: dataset -> plan -> shards per split -> means, shared data,
indices -> manifest. The CLI (:mod:`extract.run`) only parses options and shows progress."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extract.datasets import open_dataset
from extract.datasets.base import Record
from extract.loader import Item
from extract.means import FieldMeans
from extract.pipeline import (
    MEANS_SUFFIX,
    LoopOptions,
    Timing,
    extract_split,
    image_identity,
    means_path,
    sample_meta,
)
from extract.plan import Plan, PlanOptions, make_plan, student_input_field
from extract.store import (
    CacheBuilder,
    CacheReader,
    CacheSpec,
    Manifest,
    ShardLimits,
    ShardPlan,
    SplitWriter,
)
from extract.store.atomic import sha256_file
from extract.store.lock import WriterLock
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


@dataclass
class ExtractResult:
    manifest: Manifest | None  # None on ranks other than 0 (rank 0 writes the manifest)
    cache_hit: bool
    timing: dict[str, Any]


def input_fingerprints(adapter, splits: list[str]) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every annotation file, named relative to the dataset root."""
    files = sorted({path for split in splits for path in adapter.input_files(split)})
    root = Path(adapter.root)
    return {
        path.relative_to(root).as_posix(): {
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
        }
        for path in files
    }


def cache_spec(config: ExtractConfig, adapter, plan: Plan, splits: list[str]) -> CacheSpec:
    options = asdict(config.plan)
    if config.loop.device_decode:  # other pixels than PIL's, so another cache (keys of the
        # default, PIL-decoded caches stay as they were: the entry is only there when used)
        options["image_decode"] = "torchvision decode_jpeg on the GPU, antialiased interpolate"
    return CacheSpec(
        format=config.format,
        dataset={
            "adapter": adapter.name,
            "options": config.dataset_options,
            "inputs": input_fingerprints(adapter, splits),
        },
        fields=plan.fields,
        task=adapter.task(),
        config={
            **options,
            "teachers": [plan.image.id, plan.text.id],
            "shared_space": plan.shared_space,
            "text_vocab_size": plan.text.vocab_size,
            "student_input_field": student_input_field(plan),
            "splits": splits,
            "limit": config.limit,
            "means_split": means_split(splits),
        },
        limits=config.limits,
    )


def means_split(splits: list[str]) -> str:
    return "train" if "train" in splits else splits[0]


def shard_positions(config: ExtractConfig, plan: Plan, records: dict[str, list[Record]]) -> int:
    """Input positions per shard: ``--shard-samples``, fewer when the largest sample (fields and
    json) times that many would pass ``--shard-mib``. Fixed before anything is encoded, so shards
    are ranges of positions any process can write (:class:`extract.store.ShardPlan`)."""
    fields = sum(spec.bytes_per_sample for spec in plan.fields.values())
    meta = max(
        (
            len(SplitWriter.meta_bytes(record.key, sample_meta(Item(0, record, None, None), plan)))
            for split_records in records.values()
            for record in split_records
        ),
        default=0,
    )
    return max(1, min(config.limits.max_count, config.limits.max_bytes // (fields + meta)))


def run_extraction(config: ExtractConfig, progress: ProgressFactory | None = None) -> ExtractResult:
    """Extract a cache; under ``torchrun`` every rank writes its share of each split's shards
    and rank 0 then adds the means, the shared data, the indices and the manifest. Other ranks
    return a result without a manifest."""
    started = time.perf_counter()
    world = current()
    adapter = open_dataset(config.dataset, config.root, **config.dataset_options)
    splits = config.splits or adapter.splits()
    records = {
        split: grouped_by_image(list(adapter.records(split))[: config.limit]) for split in splits
    }
    check_unique_keys(records)
    has_boxes = any(record.boxes for split in splits for record in records[split][:100])
    plan = make_plan(config.plan, adapter.num_texts, has_boxes)
    positions = shard_positions(config, plan, records)
    spec = cache_spec(config, adapter, plan, splits)
    with contextlib.ExitStack() as held:  # rank 0's writer lock, until the cache is done
        opened = open_writers(
            config.out, spec, records, positions, world, means_split(splits), held
        )
        if opened is None:
            manifest = CacheReader(config.out).manifest
            return ExtractResult(manifest, True, manifest.timing)
        builder, writers, missing = opened
        for encoder in plan.encoders:
            encoder.to(config.loop.device)
        timing = {"splits": {}, "setup_s": round(time.perf_counter() - started, 3)}
        total = Timing()
        bytes_per_sample = sum(field.bytes_per_sample for field in plan.fields.values())
        done = {}  # split -> the records of the shards this rank wrote
        for split in splits:
            writer = writers[split]
            mine = missing[split][world.rank :: world.size]
            bar = None
            if progress is not None and world.main:
                count = sum(len(range(*writer.plan.bounds(n))) for n in mine)
                bar = progress(count, 0, split, bytes_per_sample)
            on_progress = None if bar is None else bar.update
            split_timing = extract_split(
                plan, adapter, records[split], writer, config.loop, mine,
                split == means_split(splits), on_progress,
            )  # fmt: skip
            if bar is not None:
                bar.close()
            timing["splits"][split] = split_timing.as_dict()
            total.add(split_timing)
            done[split] = {n: writer.finished[n] for n in mine}
        ranks = gather_to_main(world, {"total": total.as_dict(), "splits": timing["splits"]})
        ranks_done = gather_to_main(world, done)
        if not world.main:
            return ExtractResult(None, False, timing)
        for split, writer in writers.items():
            for rank_done in ranks_done:
                writer.add_finished(rank_done[split])
            writer.close()
        store_means(builder, plan, writers[means_split(splits)])
        add_task_data(builder, plan, adapter)
        indices, index_s = build_indices(builder, config) if config.build_indices else ({}, 0.0)
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
            "shard_positions": positions,
            "on_error": config.loop.on_error,
            "torch": torch.__version__,
            "adapter_skipped": getattr(adapter, "skipped", []),
        }
        manifest = builder.finish(indices=indices, runtime=runtime, timing=timing)
        for stem in writers[means_split(splits)].stems():
            means_path(stem).unlink(missing_ok=True)
        return ExtractResult(manifest, False, timing)


def grouped_by_image(records: list[Record]) -> list[Record]:
    """The records with each image's samples together, at its first sample's place (a stable
    grouping: the order the datasets already give when they list an image's questions
    together), so that a shard stores each image's fields once (:func:`image_identity`)."""
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(image_identity(record), []).append(record)
    return [record for group in groups.values() for record in group]


def check_unique_keys(records: dict[str, list[Record]]) -> None:
    for split, split_records in records.items():
        seen: set[str] = set()
        for record in split_records:
            if str(record.key) in seen:
                raise ValueError(
                    f"split {split!r}: sample key {record.key!r} occurs twice; keys must be unique"
                )
            seen.add(str(record.key))


def open_writers(
    out: Path,
    spec: CacheSpec,
    records: dict[str, list[Record]],
    positions: int,
    world,
    means_of: str,
    held: contextlib.ExitStack,
) -> tuple[CacheBuilder, dict[str, SplitWriter], dict[str, list[int]]] | None:
    """The cache builder, a planned writer per split and the shards each split still needs, or
    None for a finished cache.

    Rank 0 alone starts the cache, takes the writer lock (into ``held``: another job writing
    the same directory is refused), finds the finished shards (those of the means split only
    with their sums beside them), removes unfinished shards' files, and tells every rank which
    shards are missing, so all deal them out alike."""
    builder = CacheBuilder(out, spec) if world.main else None
    if broadcast(world, builder.complete if builder is not None else None):
        return None
    if world.main:
        held.enter_context(WriterLock(out))
    if builder is None:
        barrier(world)  # rank 0 has cleaned up
        builder = CacheBuilder(out, spec, owner=False)
    writers = {
        split: builder.split(
            split,
            ShardPlan(positions, len(split_records)),
            clean=world.main,
            inputs=[str(record.key) for record in split_records],
            beside=MEANS_SUFFIX if split == means_of else None,
        )
        for split, split_records in records.items()
    }
    if world.main:
        barrier(world)
    missing = broadcast(world, {s: w.missing() for s, w in writers.items()} if world.main else None)
    return builder, writers, missing


def store_means(builder: CacheBuilder, plan: Plan, writer: SplitWriter) -> None:
    """The means split's per-shard sums, added in shard order (the same whoever wrote them)."""
    means = FieldMeans(list(plan.fields))
    for stem in writer.stems():
        path = means_path(stem)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the shard's sums for the means are gone; delete "
                f"{builder.cache_dir} and extract again"
            )
        means.merge(FieldMeans.load(means.names, path))
    for name, mean in means.result().items():
        builder.put_shared(f"mean_{name}", mean)


def add_task_data(builder: CacheBuilder, plan: Plan, adapter) -> None:
    """Data shared by all samples: the VQA answer vocabulary and its teacher text embeddings."""
    vocab = adapter.task().get("answer_vocab")
    if not vocab:
        return
    builder.put_shared("answer_vocab", list(vocab))
    embeddings = []
    with torch.inference_mode():
        for start in range(0, len(vocab), 256):
            ids, lengths = plan.text.tokenize(list(vocab[start : start + 256]))
            device = next(iter(plan.text.model.parameters())).device
            out = plan.text.encode(ids.to(device), lengths.to(device))
            embeddings.append(out["global"].float().cpu().numpy())
    builder.put_shared("answer_emb", np.concatenate(embeddings).astype(np.float32))


def build_indices(builder: CacheBuilder, config: ExtractConfig) -> tuple[dict, float]:
    """FAISS indices over the pooled image and text embeddings of every split."""
    from extract.index import build_keyed_index

    started = time.perf_counter()
    reader = CacheReader(builder.cache_dir, as_float32=True, manifest=builder.preview())
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
            paths = index.save(builder.cache_dir / "indices", f"{split}-{modality}")
            info["files"] = [asdict(builder.record_file(path)) for path in paths]
            indices[f"{split}/{modality}"] = info
    return indices, time.perf_counter() - started
