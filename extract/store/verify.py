"""Check a cache against its manifest: files, sizes, checksums, counts, shapes, finiteness."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import read_json, sha256_file
from .fields import nonfinite, real_rows
from .layout import READERS
from .manifest import FileRecord, Manifest, load_manifest

MAX_PROBLEMS_PER_SHARD = 5


@dataclass
class SplitSummary:
    shards: int = 0
    samples: int = 0
    skipped: int = 0
    bytes: int = 0


@dataclass
class VerifyReport:
    cache_dir: Path
    problems: list[str] = field(default_factory=list)
    splits: dict[str, SplitSummary] = field(default_factory=dict)
    cache_key: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_file(cache_dir: Path, record: FileRecord, problems: list[str]) -> bool:
    """True when the file exists with the recorded size and sha256; else one problem is added."""
    path = cache_dir / record.name
    if not path.is_file():
        problems.append(f"{record.name}: missing")
        return False
    size = path.stat().st_size
    if size != record.bytes:
        problems.append(
            f"{record.name}: {size} bytes, manifest says {record.bytes} (truncated or replaced)"
        )
        return False
    if sha256_file(path) != record.sha256:
        problems.append(f"{record.name}: sha256 differs from the manifest (the bytes were changed)")
        return False
    return True


def verify_cache(
    cache_dir: str | Path, decode: bool = True, on_shard: Callable[[str], None] | None = None
) -> VerifyReport:
    """Check everything; ``decode=False`` skips reading the samples (sizes and checksums only)."""
    cache_dir = Path(cache_dir)
    report = VerifyReport(cache_dir)
    try:
        manifest = load_manifest(cache_dir)
    except (FileNotFoundError, ValueError, KeyError, TypeError) as error:
        report.problems.append(f"manifest: {error}")
        return report
    report.cache_key = manifest.cache_key
    for record in manifest.shared.values():
        check_file(cache_dir, record, report.problems)
    for entry in manifest.indices.values():
        for record in entry.get("files", []):
            check_file(cache_dir, FileRecord(**record), report.problems)
    for split, record in manifest.splits.items():
        summary = report.splits.setdefault(split, SplitSummary(skipped=len(record.skipped)))
        for shard in record.shards:
            summary.shards += 1
            summary.bytes += shard.file.bytes
            _verify_shard(cache_dir, manifest, shard, decode, report.problems, summary)
            if on_shard is not None:
                on_shard(shard.file.name)
    return report


def _verify_shard(cache_dir, manifest: Manifest, shard, decode, problems, summary) -> None:
    files_ok = check_file(cache_dir, shard.file, problems)
    index_ok = check_file(cache_dir, shard.index, problems)
    if not index_ok:
        return
    index = read_json(cache_dir / shard.index.name)
    if len(index["keys"]) != shard.count:
        problems.append(
            f"{shard.index.name}: lists {len(index['keys'])} samples, manifest says {shard.count}"
        )
        return
    summary.samples += shard.count
    if files_ok and decode:
        reader = READERS[manifest.format](cache_dir / shard.file.name, manifest.fields, index)
        try:
            _verify_samples(shard.file.name, manifest, reader, index["keys"], problems)
        finally:
            reader.close()


def _verify_samples(where: str, manifest: Manifest, reader, keys: list[str], problems) -> None:
    found, start = 0, len(problems)
    try:
        for row, (arrays, meta) in enumerate(reader.iterate()):
            found += 1
            _verify_sample(
                where,
                manifest,
                arrays,
                meta,
                keys[row] if row < len(keys) else f"row {row}",
                problems,
            )
            if len(problems) - start >= MAX_PROBLEMS_PER_SHARD:
                problems.append(f"{where}: further problems not listed")
                return
    except (OSError, ValueError, KeyError) as error:
        problems.append(f"{where}: unreadable ({error})")
        return
    if found != len(keys):
        problems.append(f"{where}: holds {found} samples, its index lists {len(keys)}")


def _verify_sample(
    where: str, manifest: Manifest, arrays: dict, meta: bytes, key: str, problems
) -> None:
    named = json.loads(meta).get("key")
    if named != key:
        problems.append(f"{where}: sample {key!r}: its json names key {named!r}")
    for name, spec in manifest.fields.items():
        values, scale = arrays[name]
        try:
            shape = spec.stored_shape(arrays[spec.lengths][0] if spec.lengths else None)
            if spec.lengths:
                real_rows(spec, arrays[spec.lengths][0], key)
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        if values.shape != shape or values.dtype != spec.dtype:
            problems.append(
                f"{where}: sample {key!r}, field {name!r}: {values.dtype}{list(values.shape)}, "
                f"manifest says {spec.dtype}{list(shape)}"
            )
        elif nonfinite(values) or (scale is not None and nonfinite(scale)):
            problems.append(f"{where}: sample {key!r}, field {name!r}: NaN or infinite values")
        elif scale is not None and scale.shape != shape[:-1]:
            problems.append(f"{where}: sample {key!r}, field {name!r}: scale shape {scale.shape}")


def format_report(report: VerifyReport) -> str:
    lines = [f"cache {report.cache_dir}  key {report.cache_key[:16] or '-'}"]
    lines.append(f"{'split':<16}{'shards':>8}{'samples':>10}{'skipped':>9}{'MiB':>10}")
    for name, s in report.splits.items():
        lines.append(
            f"{name:<16}{s.shards:>8}{s.samples:>10}{s.skipped:>9}{s.bytes / 2**20:>10.1f}"
        )
    if report.ok:
        lines.append("OK: every shard matches the manifest")
    else:
        lines.append(f"FAILED: {len(report.problems)} problem(s)")
        lines += [f"  - {problem}" for problem in report.problems]
    return "\n".join(lines)
