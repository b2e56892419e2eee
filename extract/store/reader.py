"""Reading a cache: random access by key, and ordered iteration over shards.

The trainer's streaming view (shuffling, DataLoader workers, distributed ranks) is built on this
in :mod:`extract.store.stream`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import read_json
from .fields import FieldSpec, decode
from .layout import READERS, SHARED_DIR, group_dir
from .manifest import GroupRecord, Manifest, ShardRecord, load_manifest

Sample = dict[str, Any]  # {"__key__": str, "meta": dict, <field>: np.ndarray, ...}


class CacheReader:
    """A finished cache: its base and one column group (``group``; by default the first, the
    one extracted with the cache), read as one set of fields. ``as_float32`` decodes every field
    to float32 (else the stored dtype; int8 fields are dequantised to float16)."""

    def __init__(
        self,
        cache_dir: str | Path,
        as_float32: bool = False,
        manifest: Manifest | None = None,
        group: str | None = None,
    ):
        self.cache_dir = Path(cache_dir)
        # ``manifest`` lets the extraction read back what it wrote before the manifest exists.
        self.manifest: Manifest = manifest or load_manifest(self.cache_dir)
        self.as_float32 = as_float32
        self.group = pick_group(self.manifest, group, self.cache_dir)

    @property
    def group_record(self) -> GroupRecord | None:
        return None if self.group is None else self.manifest.groups[self.group]

    @property
    def group_dir(self) -> Path | None:
        return None if self.group is None else group_dir(self.cache_dir, self.group)

    @property
    def fields(self) -> dict[str, FieldSpec]:
        """The base's fields and the group's."""
        group = self.group_record
        return {**self.manifest.fields, **({} if group is None else group.spec.fields)}

    @property
    def config(self) -> dict[str, Any]:
        """The extraction settings: the base's, updated with the group's (its teachers)."""
        group = self.group_record
        return {**self.manifest.spec.config, **({} if group is None else group.spec.config)}

    @property
    def cache_key(self) -> str:
        """The key of what a run reads: the base's, combined with the group's."""
        group = self.group_record
        if group is None:
            return self.manifest.cache_key
        return group.spec.key(self.manifest.cache_key)

    @property
    def indices(self) -> dict[str, Any]:
        group = self.group_record
        return self.manifest.indices if group is None else group.indices

    @property
    def indices_dir(self) -> Path:
        return (self.group_dir or self.cache_dir) / "indices"

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def split(self, name: str, fields: Iterable[str] | None = None) -> SplitReader:
        if name not in self.manifest.splits:
            raise ValueError(f"{self.cache_dir}: no split {name!r}; the cache has {self.splits}")
        return SplitReader(self, name, fields)

    def shared(self, name: str) -> np.ndarray | Any:
        """Data stored once beside the manifest or the group's shards (an array, or JSON)."""
        group = self.group_record
        if group is not None and name in group.shared:
            path = self.group_dir / group.shared[name].name
        elif name in self.manifest.shared:
            path = self.cache_dir / self.manifest.shared[name].name
        else:
            held = sorted(self.manifest.shared) + sorted(group.shared if group else [])
            raise ValueError(f"{self.cache_dir}: no shared entry {name!r}; it has {held}")
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return read_json(path)

    def shared_path(self, name: str) -> Path:
        return self.cache_dir / SHARED_DIR / name


def pick_group(manifest: Manifest, name: str | None, cache_dir: Path) -> str | None:
    """A group by name (or by its teachers' ids, e.g. ``minilm``), by default the first."""
    if not manifest.groups:
        if name is not None:
            raise ValueError(f"{cache_dir} has no column groups; it cannot give {name!r}")
        return None
    for group in manifest.groups.values():
        if set(group.spec.fields) & set(manifest.fields):
            raise ValueError(
                f"{cache_dir}: column group {group.spec.name!r} has fields of the same names as "
                "the base's; the manifest is inconsistent: extract again"
            )
    if name is None:
        return next(iter(manifest.groups))
    if name in manifest.groups:
        return name
    by_teacher = [
        group
        for group, record in manifest.groups.items()
        if name in record.spec.config.get("teachers", [])
    ]
    if len(by_teacher) == 1:
        return by_teacher[0]
    if by_teacher:
        raise ValueError(
            f"{cache_dir}: teacher {name!r} is in several column groups ({by_teacher}); give "
            "the group's name"
        )
    raise ValueError(
        f"{cache_dir}: no column group {name!r}; it has {list(manifest.groups)} (add one with "
        "python -m extract.run ... --add-teachers ID)"
    )


class SplitReader:
    """One split: ``len``, ``keys()``, ``reader[key]`` and ``iter_shard(i)``. A sample's
    fields come from the base's shard and the group's, row for row."""

    def __init__(self, cache: CacheReader, name: str, fields: Iterable[str] | None = None):
        self.cache = cache
        self.name = name
        self.record = cache.manifest.splits[name]
        self.wanted = _check_wanted(cache, fields)
        base = set(cache.manifest.fields)
        group = set(cache.fields) - base
        self.base_wanted = base if self.wanted is None else self.wanted & base
        self.group_wanted = group if self.wanted is None else self.wanted & group
        self._readers: dict[int, Any] = {}
        self._locations: dict[str, tuple[int, int]] | None = None

    def __len__(self) -> int:
        return self.record.num_samples

    @property
    def shards(self) -> list[ShardRecord]:
        return self.record.shards

    def shard_reader(self, number: int):
        if number not in self._readers:
            self._readers[number] = self._open(number)
        return self._readers[number]

    def _open(self, number: int) -> MergedShard:
        cache, shard = self.cache, self.shards[number]
        index = read_json(cache.cache_dir / shard.index.name)
        reader_class = READERS[cache.manifest.format]
        base = reader_class(cache.cache_dir / shard.file.name, cache.manifest.fields, index)
        group = None
        if self.group_wanted:
            record = cache.group_record.splits[self.name].shards[number]
            group_index = read_json(cache.group_dir / record.index.name)
            if group_index["keys"] != index["keys"]:
                raise ValueError(
                    f"{cache.group_dir / record.index.name}: its keys are not those of "
                    f"{shard.index.name}, row for row; run python -m extract.verify"
                )
            fields = cache.group_record.spec.fields
            group = reader_class(cache.group_dir / record.file.name, fields, group_index, False)
        return MergedShard(base, group, self.base_wanted, self.group_wanted)

    def keys(self) -> list[str]:
        return list(self._key_locations())

    def _key_locations(self) -> dict[str, tuple[int, int]]:
        if self._locations is None:
            locations = {}
            for number, shard in enumerate(self.shards):
                index = read_json(self.cache.cache_dir / shard.index.name)
                for row, key in enumerate(index["keys"]):
                    locations[key] = (number, row)
            self._locations = locations
        return self._locations

    def __contains__(self, key: str) -> bool:
        return key in self._key_locations()

    def __getitem__(self, key: str) -> Sample:
        locations = self._key_locations()
        if key not in locations:
            raise KeyError(f"{self.cache.cache_dir}: split {self.name!r} has no sample {key!r}")
        number, row = locations[key]
        arrays, meta = self.shard_reader(number).read(row, self.wanted)
        return self._decode(arrays, meta)

    def iter_shard(self, number: int) -> Iterator[Sample]:
        """Samples of one shard in stored order; the shard is closed when done."""
        reader = self.shard_reader(number)
        try:
            for arrays, meta in reader.iterate(self.wanted):
                yield self._decode(arrays, meta)
        finally:
            reader.close()
            del self._readers[number]

    def iter_rows(self, number: int, rows: Iterable[int]) -> Iterator[Sample]:
        """Only the given rows of one shard (the others are neither read nor decoded)."""
        reader = self.shard_reader(number)
        try:
            for row in rows:
                yield self._decode(*reader.read(row, self.wanted))
        finally:
            reader.close()
            del self._readers[number]

    def __iter__(self) -> Iterator[Sample]:
        for number in range(len(self.shards)):
            yield from self.iter_shard(number)

    def _decode(self, arrays: dict, meta: bytes) -> Sample:
        info = json.loads(meta)
        sample: Sample = {"__key__": info["key"], "meta": info}
        for name, (values, scale) in arrays.items():
            spec = self.cache.fields[name]
            lengths = arrays[spec.lengths][0] if spec.lengths else None
            sample[name] = decode(spec, values, scale, self.cache.as_float32, lengths)
        return sample


class MergedShard:
    """The base's shard and a group's, read together (the group's only when fields of it are
    wanted): ``read(row)`` and ``iterate()`` as a shard reader gives them."""

    def __init__(self, base, group, base_wanted: set[str], group_wanted: set[str]):
        self.base, self.group = base, group
        self.base_wanted, self.group_wanted = base_wanted, group_wanted

    def __len__(self) -> int:
        return len(self.base)

    def read(self, row: int, wanted=None) -> tuple[dict, bytes]:
        arrays, meta = self.base.read(row, self.base_wanted)
        if self.group is not None:
            arrays.update(self.group.read(row, self.group_wanted)[0])
        return arrays, meta

    def iterate(self, wanted=None):
        base = self.base.iterate(self.base_wanted)
        if self.group is None:
            yield from base
            return
        for (arrays, meta), (more, _) in zip(
            base, self.group.iterate(self.group_wanted), strict=True
        ):
            arrays.update(more)
            yield arrays, meta

    def close(self) -> None:
        self.base.close()
        if self.group is not None:
            self.group.close()


def _check_wanted(cache: CacheReader, fields: Iterable[str] | None) -> set[str] | None:
    if fields is None:
        return None
    wanted = set(fields)
    unknown = sorted(wanted - set(cache.fields))
    if unknown:
        raise ValueError(
            f"{cache.cache_dir}: no field(s) {unknown}; the cache has {sorted(cache.fields)}"
        )
    return wanted | {cache.fields[name].lengths for name in wanted if cache.fields[name].lengths}
