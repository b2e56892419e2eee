"""The manifest (``<cache>/manifest.json``) and the cache key.

The manifest is the contract between the stages: it says what every shard holds and how to
check it. It is written once, atomically, after everything else; a directory without one is an
unfinished extraction. The cache key is a sha256 over everything that determines the stored
bytes (a :class:`CacheSpec`), so it can be computed before extracting and compared with an
existing cache: same key, nothing to do; different key, the differences are named.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .atomic import canonical_json, read_json, write_json_atomic
from .fields import FieldSpec

# 2: an int8 field and its scales are one tar member; 3: per-image, ragged; 4: each member's
# CRC-32 in the offset index (tar), Fletcher-32 chunks and the json's CRC-32 (HDF5)
FORMAT_VERSION = 4
MANIFEST_NAME = "manifest.json"
GROUP_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
FORMATS = ("wds", "hdf5")


@dataclass(frozen=True)
class ShardLimits:
    """A shard is closed when it holds ``max_count`` samples or would pass ``max_bytes``."""

    max_count: int = 1000
    max_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_bytes < 1:
            raise ValueError(f"shard limits must be positive, got {self}")


@dataclass
class CacheSpec:
    """Everything that determines the bytes of a cache; its hash is the cache key.

    ``dataset`` holds the adapter name and the fingerprints (size, sha256) of the input files,
    named relative to the dataset root so that the key does not depend on where the data lives.
    ``config`` holds the extraction settings that change what is stored; settings that do not
    (batch size, workers, device) belong in the manifest's ``runtime`` instead.
    """

    format: str
    dataset: dict[str, Any]
    fields: dict[str, FieldSpec]
    task: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    limits: ShardLimits = field(default_factory=ShardLimits)

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"unknown cache format {self.format!r}; choose one of {FORMATS}")
        for name, spec in self.fields.items():
            if name != spec.name:
                raise ValueError(f"field registered as {name!r} is named {spec.name!r}")
            if spec.lengths:
                check_lengths_field(spec, self.fields.get(spec.lengths))
        # One order everywhere (members in a shard, datasets in HDF5, the manifest): by name.
        self.fields = dict(sorted(self.fields.items()))

    def key_material(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "format": self.format,
            "dataset": self.dataset,
            "fields": {name: spec.to_json() for name, spec in sorted(self.fields.items())},
            "task": self.task,
            "config": self.config,
            "limits": asdict(self.limits),
        }

    def cache_key(self) -> str:
        return hashlib.sha256(canonical_json(self.key_material()).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return self.key_material()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CacheSpec:
        return cls(
            format=data["format"],
            dataset=data["dataset"],
            fields={name: FieldSpec.from_json(f) for name, f in data["fields"].items()},
            task=data.get("task", {}),
            config=data.get("config", {}),
            limits=ShardLimits(**data["limits"]),
        )


def check_lengths_field(spec: FieldSpec, lengths: FieldSpec | None) -> None:
    """A ragged field's lengths: a stored ``[C]`` integer field of the same sample."""
    if (
        lengths is None
        or lengths.storage not in ("int32", "uint8")
        or lengths.shape != spec.shape[:1]
        or lengths.lengths
        or lengths.per_image
    ):
        raise ValueError(
            f"field {spec.name!r} is ragged by {spec.lengths!r}, which must be a declared integer "
            f"field of shape {list(spec.shape[:1])}, stored per sample"
        )


@dataclass
class FileRecord:
    """A file of the cache, by path relative to the cache directory."""

    name: str
    bytes: int
    sha256: str


@dataclass
class ShardRecord:
    """A finished shard: its container file, its offset index, and the samples in it.

    ``stop`` is the input position after the last sample the shard covers (written or skipped),
    which is where a resumed extraction starts reading.
    """

    file: FileRecord
    index: FileRecord
    count: int
    stop: int
    skipped: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShardRecord:
        return cls(
            file=FileRecord(**data["file"]),
            index=FileRecord(**data["index"]),
            count=data["count"],
            stop=data["stop"],
            skipped=data.get("skipped", []),
        )


@dataclass
class SplitRecord:
    shards: list[ShardRecord]

    @property
    def num_samples(self) -> int:
        return sum(shard.count for shard in self.shards)

    @property
    def skipped(self) -> list[dict[str, Any]]:
        return [entry for shard in self.shards for entry in shard.skipped]

    def to_json(self) -> dict[str, Any]:
        return {
            "num_samples": self.num_samples,
            "num_skipped": len(self.skipped),
            "shards": [asdict(shard) for shard in self.shards],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SplitRecord:
        return cls(shards=[ShardRecord.from_json(s) for s in data["shards"]])


@dataclass
class GroupSpec:
    """A column group: fields stored in shards of their own (``groups/<name>/``), aligned row for
    row with the base's shards, e.g. one pair of teachers' features. Its key covers the base's
    key, so a group never passes for one made over other samples."""

    name: str
    fields: dict[str, FieldSpec]
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not GROUP_NAME.match(self.name):
            raise ValueError(
                f"group name {self.name!r} is not allowed: use lower-case letters, digits, '-' "
                "and '_', starting with a letter or digit"
            )
        self.fields = dict(sorted(self.fields.items()))
        for spec in self.fields.values():
            if spec.lengths:
                check_lengths_field(spec, self.fields.get(spec.lengths))

    def to_json(self) -> dict[str, Any]:
        fields = {name: spec.to_json() for name, spec in self.fields.items()}
        return {"name": self.name, "fields": fields, "config": self.config}

    def key(self, base_key: str) -> str:
        material = {"base": base_key, **self.to_json()}
        return hashlib.sha256(canonical_json(material).encode()).hexdigest()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupSpec:
        fields = {name: FieldSpec.from_json(f) for name, f in data["fields"].items()}
        return cls(name=data["name"], fields=fields, config=data.get("config", {}))


@dataclass
class GroupRecord:
    """A finished column group: its spec, shards per split (named relative to the group's
    folder), shared data, indices and timing."""

    spec: GroupSpec
    splits: dict[str, SplitRecord]
    shared: dict[str, FileRecord] = field(default_factory=dict)
    indices: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)

    def to_json(self, base_key: str) -> dict[str, Any]:
        return {
            **self.spec.to_json(),
            "splits": {name: split.to_json() for name, split in self.splits.items()},
            "shared": {name: asdict(record) for name, record in self.shared.items()},
            "indices": self.indices,
            "timing": self.timing,
            "key": self.spec.key(base_key),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GroupRecord:
        return cls(
            spec=GroupSpec.from_json(data),
            splits={name: SplitRecord.from_json(s) for name, s in data["splits"].items()},
            shared={name: FileRecord(**r) for name, r in data.get("shared", {}).items()},
            indices=data.get("indices", {}),
            timing=data.get("timing", {}),
        )


@dataclass
class Manifest:
    """The base (keys, json, the student's inputs: ``spec`` and ``splits``) and its column
    groups (``groups``, in the order they were added)."""

    spec: CacheSpec
    splits: dict[str, SplitRecord]
    shared: dict[str, FileRecord] = field(default_factory=dict)
    indices: dict[str, Any] = field(default_factory=dict)
    runtime: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    groups: dict[str, GroupRecord] = field(default_factory=dict)

    @property
    def cache_key(self) -> str:
        return self.spec.cache_key()

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return self.spec.fields

    @property
    def format(self) -> str:
        return self.spec.format

    @property
    def task(self) -> dict[str, Any]:
        return self.spec.task

    def to_json(self) -> dict[str, Any]:
        data = self.spec.to_json()
        data.update(
            splits={name: split.to_json() for name, split in self.splits.items()},
            shared={name: asdict(record) for name, record in self.shared.items()},
            indices=self.indices,
            runtime=self.runtime,
            timing=self.timing,
            bytes_per_sample=sum(f.bytes_per_sample for f in self.spec.fields.values()),
            # a list: the order groups were added in (the first is a reader's default)
            groups=[group.to_json(self.cache_key) for group in self.groups.values()],
            cache_key=self.cache_key,
        )
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        return cls(
            spec=CacheSpec.from_json(data),
            splits={name: SplitRecord.from_json(s) for name, s in data["splits"].items()},
            shared={name: FileRecord(**r) for name, r in data.get("shared", {}).items()},
            indices=data.get("indices", {}),
            runtime=data.get("runtime", {}),
            timing=data.get("timing", {}),
            groups={g["name"]: GroupRecord.from_json(g) for g in data.get("groups", [])},
        )


def save_manifest(cache_dir: str | Path, manifest: Manifest) -> Path:
    path = Path(cache_dir) / MANIFEST_NAME
    write_json_atomic(path, manifest.to_json())
    return path


def load_manifest(cache_dir: str | Path) -> Manifest:
    path = Path(cache_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: {cache_dir} is not a finished cache (an extraction writes "
            "its manifest last); run `make extract` or `python -m extract.run --out "
            f"{cache_dir} ...` to create or finish it"
        )
    data = read_json(path)
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: cache format version {version!r}, this code reads version "
            f"{FORMAT_VERSION}; delete {Path(cache_dir)} (or choose another --out) and extract "
            "it again with this version"
        )
    manifest = Manifest.from_json(data)
    stored_key = data.get("cache_key")
    if stored_key != manifest.cache_key:
        raise ValueError(
            f"{path}: the stored cache_key {stored_key} does not match the key of the manifest's "
            f"own contents ({manifest.cache_key}); manifest edited or damaged: extract again"
        )
    for group, stored in zip(manifest.groups.values(), data.get("groups", []), strict=True):
        if stored.get("key") != group.spec.key(manifest.cache_key):
            raise ValueError(
                f"{path}: the key of column group {group.spec.name!r} does not match its contents; "
                "manifest edited or damaged: extract again"
            )
    return manifest


def describe_differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON-like values, e.g. ``fields.img.storage``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for name in sorted(set(old) | set(new), key=str):
            where = f"{path}.{name}" if path else str(name)
            if name not in old:
                lines.append(f"{where}: added ({_short(new[name])})")
            elif name not in new:
                lines.append(f"{where}: removed (was {_short(old[name])})")
            else:
                lines.extend(describe_differences(old[name], new[name], where))
        return lines
    if old != new:
        return [f"{path or 'value'}: {_short(old)} -> {_short(new)}"]
    return []


def _short(value: Any, limit: int = 80) -> str:
    text = canonical_json(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
