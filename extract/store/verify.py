"""Check a cache against its manifest: files, sizes, checksums, counts, shapes, finiteness."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from .atomic import read_json, sha256_file
from .fields import nonfinite, real_rows
from .layout import READERS, group_dir
from .manifest import FileRecord, Manifest, load_manifest
from .reader import CacheReader

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


def check_file(cache_dir: Path, record: FileRecord, problems: list[str], prefix: str = "") -> bool:
    """True when the file exists with the recorded size and sha256; else one problem is added,
    naming it ``prefix + record.name`` (a group's files: ``groups/<name>/...``)."""
    path = cache_dir / record.name
    name = prefix + record.name
    problem = size_problem(path, record, name)
    if problem is not None:
        problems.append(problem)
        return False
    if sha256_file(path) != record.sha256:
        problems.append(f"{name}: sha256 differs from the manifest (the bytes were changed)")
        return False
    return True


def files_read(
    cache: CacheReader, splits: Iterable[str] | None = None
) -> list[tuple[Path, FileRecord]]:
    """Every file a reader of ``cache`` (its base and its group) may open for ``splits`` (all by
    default): shards, offset indices, shared data and the FAISS indices, as (folder, record)."""
    manifest, wanted = cache.manifest, cache.splits if splits is None else list(splits)
    parts = [("", manifest.splits, manifest.shared, manifest.indices)]
    group = cache.group_record
    if group is not None:
        prefix = f"{cache.group_dir.relative_to(cache.cache_dir).as_posix()}/"
        parts.append((prefix, group.splits, group.shared, group.indices))
    records = []
    for prefix, split_records, shared, indices in parts:
        mine = list(shared.values())
        mine += [FileRecord(**r) for e in indices.values() for r in e.get("files", [])]
        for split in wanted:
            mine += [f for shard in split_records[split].shards for f in (shard.file, shard.index)]
        records += [replace(record, name=prefix + record.name) for record in mine]
    return [(cache.cache_dir, record) for record in records]


def check_files(
    files: Iterable[tuple[Path, FileRecord]], on_file: Callable[[str], None] | None = None
) -> list[str]:
    """Sizes and sha256s of ``files`` against their records: the problems found (one per bad
    file). A file already found sound in this process (same size and modification time) is not
    read again, so many runs over one cache in one process pay for the check once."""
    problems: list[str] = []
    for root, record in files:
        path = root / record.name
        stamp = _stamp(path)
        if stamp is None or _SOUND.get(path) != (stamp, record.sha256):
            if check_file(root, record, problems):
                _SOUND[path] = (stamp, record.sha256)
        if on_file is not None:
            on_file(record.name)
    return problems


def size_problem(path: Path, record: FileRecord, name: str) -> str | None:
    """Why the file is not the one recorded, as far as a stat tells (None: it may be)."""
    if not path.is_file():
        return f"{name}: missing"
    size = path.stat().st_size
    if size != record.bytes:
        return f"{name}: {size} bytes, manifest says {record.bytes} (truncated or replaced)"
    return None


def check_sizes(files: Iterable[tuple[Path, FileRecord]]) -> list[str]:
    """That each of ``files`` is there at its recorded size (a stat, no read): the problems."""
    found = (size_problem(root / record.name, record, record.name) for root, record in files)
    return [problem for problem in found if problem is not None]


_SOUND: dict[Path, tuple[tuple[int, int], str]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


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
    base = Part(cache_dir, manifest.fields, True)
    for split, record in manifest.splits.items():
        summary = report.splits.setdefault(split, SplitSummary(skipped=len(record.skipped)))
        for shard in record.shards:
            summary.shards += 1
            summary.bytes += shard.file.bytes
            summary.samples += _verify_shard(base, manifest, shard, decode, report.problems)
            if on_shard is not None:
                on_shard(shard.file.name)
    for name, group in manifest.groups.items():
        _verify_group(cache_dir, manifest, name, group, decode, report.problems, on_shard)
    return report


@dataclass
class Part:
    """The base or a column group: its folder, its fields, whether its shards hold the json."""

    root: Path
    fields: dict
    with_meta: bool
    prefix: str = ""  # how its files are named in problems: "" or "groups/<name>/"


def _verify_group(cache_dir, manifest, name, group, decode, problems, on_shard) -> None:
    """A column group's files, and its shards' keys against the base's, row for row."""
    part = Part(group_dir(cache_dir, name), group.spec.fields, False, f"groups/{name}/")
    for record in group.shared.values():
        check_file(part.root, record, problems, part.prefix)
    for entry in group.indices.values():
        for record in entry.get("files", []):
            check_file(part.root, FileRecord(**record), problems, part.prefix)
    for split, base in manifest.splits.items():
        if split not in group.splits or len(group.splits[split].shards) != len(base.shards):
            problems.append(f"group {name!r}: split {split!r} does not have the base's shards")
            continue
        for shard, base_shard in zip(group.splits[split].shards, base.shards, strict=True):
            _verify_shard(part, manifest, shard, decode, problems)
            if on_shard is not None:
                on_shard(f"groups/{name}/{shard.file.name}")
            _check_keys(part.root / shard.index.name, cache_dir / base_shard.index.name, problems)


def _check_keys(mine: Path, base: Path, problems) -> None:
    try:
        if read_json(mine)["keys"] != read_json(base)["keys"]:
            problems.append(f"{mine}: its keys are not the base's ({base.name}), row for row")
    except (OSError, ValueError, KeyError) as error:
        problems.append(f"{mine}: unreadable ({error})")


def _verify_shard(part: Part, manifest: Manifest, shard, decode, problems) -> int:
    """Checks one shard; returns its sample count once its index is sound (else 0)."""
    files_ok = check_file(part.root, shard.file, problems, part.prefix)
    index_ok = check_file(part.root, shard.index, problems, part.prefix)
    if not index_ok:
        return 0
    index = read_json(part.root / shard.index.name)
    if len(index["keys"]) != shard.count:
        problems.append(
            f"{part.prefix}{shard.index.name}: lists {len(index['keys'])} samples, manifest says "
            f"{shard.count}"
        )
        return 0
    if files_ok and decode:
        path = part.root / shard.file.name
        reader = READERS[manifest.format](path, part.fields, index, part.with_meta)
        try:
            where = part.prefix + shard.file.name
            _verify_samples(where, part.fields, reader, index["keys"], problems)
        finally:
            reader.close()
    return shard.count


def _verify_samples(where: str, fields: dict, reader, keys: list[str], problems) -> None:
    found, start = 0, len(problems)
    try:
        for row, (arrays, meta) in enumerate(reader.iterate()):
            found += 1
            _verify_sample(
                where,
                fields,
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
    where: str, fields: dict, arrays: dict, meta: bytes | None, key: str, problems
) -> None:
    named = key if meta is None else json.loads(meta).get("key")  # groups: keys in the index
    if named != key:
        problems.append(f"{where}: sample {key!r}: its json names key {named!r}")
    for name, spec in fields.items():
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
