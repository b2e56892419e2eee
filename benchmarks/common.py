"""What every benchmark script shares: its work folder, the synthetic data, extractions, the
machine's description, and recording a figure into ``benchmarks/results.json``.

Each figure is a ratio of two measurements taken in the same run, so that the noise of a shared
machine cancels out as far as it can; absolute times are kept only as details.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from extract.store.atomic import write_json_atomic

if TYPE_CHECKING:
    from extract.extraction import ExtractConfig, ExtractResult
    from extract.loader import Item
    from extract.plan import Plan

ROOT = Path(__file__).resolve().parent.parent
# BENCH_RESULTS and BENCH_WORK move them elsewhere (the tests do)
RESULTS = Path(os.environ.get("BENCH_RESULTS", ROOT / "benchmarks" / "results.json"))
WORK = Path(os.environ.get("BENCH_WORK", ROOT / "shards" / "bench"))  # caches, data; reused
DATA = WORK / "data"
DATA_IMAGES = 1024  # training images of the synthetic data (2 VQA questions each)

# key -> (comparison, threshold); keys without a target are reported only
TARGETS: dict[str, tuple[str, float]] = {
    "extract_efficiency": (">=", 0.85),
    "cache_speedup": (">=", 3.0),
    "loader_headroom": (">=", 10.0),
    "reader_memory_growth": ("<=", 1.2),
    "int8_bytes_ratio": ("<=", 0.55),
    "int8_cosine_error": ("<=", 0.002),
    "int8_accuracy_delta": (">=", -0.5),
    "faiss_recall_at_10": (">=", 0.95),
    "extract_scaling": ("<=", 4.4),
    "extract_ranks_max_abs_diff": ("<=", 0.0),
    "ddp_equivalence_max_abs_diff": ("<=", 1e-4),
    "image_dedup_bytes_ratio": ("<=", 0.12),  # 1.2 / the bench data's 10 hypotheses per image
    "ragged_text_bytes_ratio": ("<=", 0.4),
    "extract_efficiency_real": (">=", 0.9),  # photo-sized JPEGs, a ViT-B/16 teacher
    "extract_memory_growth": ("<=", 1.3),
}

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the offline teachers never need the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pick_device(name: str) -> torch.device:
    from extract.run import pick_device as extraction_device

    return extraction_device(name)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a timer stopped now has seen it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def machine(device: torch.device) -> str:
    """One line naming the hardware the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = f"{os.cpu_count()} cores ({cpu}), torch {torch.__version__}"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    else:
        text += ", no GPU"
    return text


def met(key: str, value: Any, target: tuple[str, float] | None = None) -> bool | None:
    """Whether ``value`` meets the key's target (every entry, for per-size figures); ``target``:
    one measured in the same run (e.g. a share of the bytes), instead of a fixed one."""
    if target is None and key not in TARGETS:
        return None
    comparison, threshold = target or TARGETS[key]
    values = list(value.values()) if isinstance(value, dict) else [value]
    if comparison == ">=":
        return all(v >= threshold for v in values)
    return all(v <= threshold for v in values)


def target_text(key: str, target: tuple[str, float] | None = None) -> str:
    if target is None and key not in TARGETS:
        return "reported"
    comparison, threshold = target or TARGETS[key]
    return f"{comparison} {threshold:g}"


def record(
    key: str,
    value: Any,
    command: str,
    device: torch.device,
    details: dict,
    target: tuple[str, float] | None = None,
) -> dict:
    """Merge one figure into ``results.json`` (atomically) and print it. ``target``: a target
    measured in this run (see :func:`met`)."""
    entry = {
        "value": value,
        "target": target_text(key, target),
        "met": met(key, value, target),
        "command": command,
        "machine": machine(device),
        "date": date.today().isoformat(),
        "details": details,
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[key] = entry
    write_json_atomic(RESULTS, dict(sorted(results.items())))
    verdict = {True: "target met", False: "TARGET MISSED", None: "reported"}[entry["met"]]
    print(f"{key} = {value} ({entry['target']}: {verdict})", flush=True)
    return entry


def synthetic_data(images: int = DATA_IMAGES) -> Path:
    """The embedded synthetic datasets (64 px scenes), generated once; returns the VQA root."""
    from extract.datasets.synthetic import GeneratorConfig, generate

    small = max(64, images // 8)
    config = GeneratorConfig(train=images, val=small, test=small, test_shifted=small)
    out = DATA / f"train{images}"
    generate(config, out)
    return out / "vqa"


def demo_data() -> Path:
    """The demo's synthetic data (its default size), generated once; returns the VQA root."""
    from extract.datasets.synthetic import GeneratorConfig, generate

    generate(GeneratorConfig(), DATA / "demo")
    return DATA / "demo" / "vqa"


@dataclass
class Extraction:
    """One extraction of synthetic VQA data with the demo's settings."""

    name: str
    teachers: str = "effnet-lite0,minilm"
    limit: int | None = None
    splits: tuple[str, ...] | None = ("train",)  # None: every split
    storage: str = "fp16"
    student_input: str = "pixels:16@64"
    max_text_length: int = 16
    build_indices: bool = True
    overlap: bool | None = None  # the extraction loop's mode; None: its default
    demo: bool = False  # the demo's data (4 splits, 1,500 training images), not the bench's

    def root(self) -> Path:
        return demo_data() if self.demo else synthetic_data()

    def config(self, device: torch.device, out: Path | None = None) -> ExtractConfig:
        from extract.extraction import ExtractConfig
        from extract.pipeline import LoopOptions
        from extract.plan import PlanOptions

        return ExtractConfig(
            dataset="vqa",
            root=self.root(),
            out=out or WORK / self.name,
            splits=list(self.splits) if self.splits else None,
            plan=PlanOptions(
                teachers=self.teachers,
                student_input=self.student_input,
                storage=self.storage,
                max_text_length=self.max_text_length,
            ),
            limit=self.limit,
            loop=LoopOptions(device=device, overlap=self.overlap),
            build_indices=self.build_indices,
        )

    def run(self, device: torch.device, out: Path | None = None) -> ExtractResult:
        """Extract (a no-op when the cache is already there)."""
        from extract.extraction import run_extraction

        started = time.perf_counter()
        result = run_extraction(self.config(device, out))
        if result.cache_hit:
            print(f"  reusing {out or WORK / self.name} (delete it to extract again)", flush=True)
        else:
            print(f"  extracted {self.name} in {time.perf_counter() - started:.1f} s", flush=True)
        return result

    def decoded(self, count: int, device: torch.device) -> tuple[Plan, list[Item]]:
        """The plan (encoders on ``device``) and the first ``count`` training records with their
        images decoded and resized, as the extraction's loader gives them."""
        from extract.datasets import open_dataset
        from extract.loader import RecordImages, image_key
        from extract.plan import make_plan

        adapter = open_dataset("vqa", self.root())
        records = list(adapter.records("train"))[:count]
        plan = make_plan(self.config(device).plan, adapter.num_texts, has_boxes=False)
        for encoder in plan.encoders:
            encoder.to(device)
        keys = [image_key(encoder.preprocess) for encoder in (plan.image, plan.student)]
        dataset = RecordImages(adapter, records, 0, keys)
        return plan, [dataset[i] for i in range(len(dataset))]


def shards(cache: Path) -> list:
    """Every shard record of the cache's base, over every split."""
    from extract.store import load_manifest

    return [shard for split in load_manifest(cache).splits.values() for shard in split.shards]


def shard_files(cache: Path, groups: list[str] | None = None) -> list[tuple[Path, int]]:
    """Every shard file of the cache (base and column groups, or only the ``groups`` named;
    offset indices included) with its size in bytes."""
    from extract.store import load_manifest
    from extract.store.layout import group_dir

    manifest = load_manifest(cache)
    parts = [(cache, manifest.splits)]
    parts += [
        (group_dir(cache, name), g.splits)
        for name, g in manifest.groups.items()
        if groups is None or name in groups
    ]
    files = []
    for root, splits in parts:
        for split in splits.values():
            for shard in split.shards:
                files += [(root / shard.file.name, shard.file.bytes)]
                files += [(root / shard.index.name, shard.index.bytes)]
    return files


def member_bytes(cache: Path, groups: list[str] | None = None) -> dict[str, float]:
    """Bytes per sample of each member kind (``img_grid.npy``, ``json``, ...) of a tar cache,
    base and column groups, tar header and padding included, over every sample of every split."""
    import tarfile

    totals: dict[str, int] = {}
    for path, _ in shard_files(cache, groups):
        if path.suffix != ".tar":
            continue
        with tarfile.open(path) as tar:
            for member in tar:
                padded = -(-member.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
                kind = member.name.split(".", 1)[1]
                totals[kind] = totals.get(kind, 0) + member.offset_data - member.offset + padded
    samples = sum(shard.count for shard in shards(cache))
    return {kind: total / samples for kind, total in sorted(totals.items())}


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")
