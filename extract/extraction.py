"""One extraction, start to finish: dataset -> plan -> shards per split -> means, shared data,
indices -> manifest. The CLI (:mod:`extract.run`) only parses options and shows progress."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from extract.datasets import open_dataset
from extract.means import FieldMeans
from extract.pipeline import LoopOptions, Timing, extract_split
from extract.plan import Plan, PlanOptions, make_plan, student_input_field
from extract.store import CacheBuilder, CacheReader, CacheSpec, Manifest, ShardLimits
from extract.store.atomic import sha256_file

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
    manifest: Manifest
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


def run_extraction(config: ExtractConfig, progress: ProgressFactory | None = None) -> ExtractResult:
    started = time.perf_counter()
    adapter = open_dataset(config.dataset, config.root, **config.dataset_options)
    splits = config.splits or adapter.splits()
    records = {split: list(adapter.records(split))[: config.limit] for split in splits}
    has_boxes = any(record.boxes for split in splits for record in records[split][:100])
    plan = make_plan(config.plan, adapter.num_texts, has_boxes)
    builder = CacheBuilder(config.out, cache_spec(config, adapter, plan, splits))
    if builder.complete:
        manifest = CacheReader(config.out).manifest
        return ExtractResult(manifest, True, manifest.timing)
    for encoder in plan.encoders:
        encoder.to(config.loop.device)
    timing = {"splits": {}, "setup_s": round(time.perf_counter() - started, 3)}
    total = Timing()
    means = FieldMeans(list(plan.fields))
    for split in splits:
        writer = builder.split(split)
        split_means = means if split == means_split(splits) else None
        if split_means is not None and writer.resume_position:
            add_finished(builder, split, split_means)
        bytes_per_sample = sum(spec.bytes_per_sample for spec in plan.fields.values())
        bar = None
        if progress is not None:
            bar = progress(len(records[split]), writer.resume_position, split, bytes_per_sample)
        on_progress = None if bar is None else bar.update
        split_timing = extract_split(
            plan, adapter, records[split], writer, config.loop, split_means, on_progress
        )
        if bar is not None:
            bar.close()
        writer.close()
        timing["splits"][split] = split_timing.as_dict()
        total.add(split_timing)
    for name, mean in means.result().items():
        builder.put_shared(f"mean_{name}", mean)
    add_task_data(builder, plan, adapter)
    indices, index_s = build_indices(builder, config) if config.build_indices else ({}, 0.0)
    timing.update(
        total=total.as_dict(),
        index_s=round(index_s, 3),
        wall_s=round(time.perf_counter() - started, 3),
    )
    runtime = {
        "batch_size": config.loop.batch_size,
        "workers": config.loop.decoders(),
        "overlapped": config.loop.overlapped,
        "device": str(config.loop.device),
        "on_error": config.loop.on_error,
        "torch": torch.__version__,
        "adapter_skipped": getattr(adapter, "skipped", []),
    }
    manifest = builder.finish(indices=indices, runtime=runtime, timing=timing)
    return ExtractResult(manifest, False, timing)


def add_finished(builder: CacheBuilder, split: str, means: FieldMeans) -> None:
    """On resume, the finished shards of the means split still count towards the means."""
    reader = CacheReader(builder.cache_dir, as_float32=True, manifest=builder.preview())
    counters = [name for name in ("token_len", "region_count") if name in reader.fields]
    for sample in reader.split(split, fields=means.names + counters):
        means.add(sample)


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
