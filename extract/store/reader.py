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
from .layout import READERS, SHARED_DIR
from .manifest import Manifest, ShardRecord, load_manifest

Sample = dict[str, Any]  # {"__key__": str, "meta": dict, <field>: np.ndarray, ...}


class CacheReader:
    """A finished cache. ``as_float32`` decodes every field to float32 (else the stored dtype;
    int8 fields are dequantised to float16)."""

    def __init__(
        self, cache_dir: str | Path, as_float32: bool = False, manifest: Manifest | None = None
    ):
        self.cache_dir = Path(cache_dir)
        # ``manifest`` lets the extraction read back what it wrote before the manifest exists.
        self.manifest: Manifest = manifest or load_manifest(self.cache_dir)
        self.as_float32 = as_float32

    @property
    def fields(self) -> dict[str, FieldSpec]:
        return self.manifest.fields

    @property
    def splits(self) -> list[str]:
        return list(self.manifest.splits)

    def split(self, name: str, fields: Iterable[str] | None = None) -> SplitReader:
        if name not in self.manifest.splits:
            raise KeyError(f"{self.cache_dir}: no split {name!r}; the cache has {self.splits}")
        return SplitReader(self, name, fields)

    def shared(self, name: str) -> np.ndarray | Any:
        """Data stored once beside the manifest (an array, or JSON data)."""
        if name not in self.manifest.shared:
            raise KeyError(
                f"{self.cache_dir}: no shared entry {name!r}; it has {sorted(self.manifest.shared)}"
            )
        path = self.cache_dir / self.manifest.shared[name].name
        if path.suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return read_json(path)

    def shared_path(self, name: str) -> Path:
        return self.cache_dir / SHARED_DIR / name


class SplitReader:
    """One split: ``len``, ``keys()``, ``reader[key]`` and ``iter_shard(i)``."""

    def __init__(self, cache: CacheReader, name: str, fields: Iterable[str] | None = None):
        self.cache = cache
        self.name = name
        self.record = cache.manifest.splits[name]
        self.wanted = _check_wanted(cache, fields)
        self._readers: dict[int, Any] = {}
        self._locations: dict[str, tuple[int, int]] | None = None

    def __len__(self) -> int:
        return self.record.num_samples

    @property
    def shards(self) -> list[ShardRecord]:
        return self.record.shards

    def shard_reader(self, number: int):
        if number not in self._readers:
            shard = self.shards[number]
            index = read_json(self.cache.cache_dir / shard.index.name)
            reader_class = READERS[self.cache.manifest.format]
            self._readers[number] = reader_class(
                self.cache.cache_dir / shard.file.name, self.cache.fields, index
            )
        return self._readers[number]

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


def _check_wanted(cache: CacheReader, fields: Iterable[str] | None) -> set[str] | None:
    if fields is None:
        return None
    wanted = set(fields)
    unknown = sorted(wanted - set(cache.fields))
    if unknown:
        raise KeyError(
            f"{cache.cache_dir}: no field(s) {unknown}; the cache has {sorted(cache.fields)}"
        )
    return wanted | {cache.fields[name].lengths for name in wanted if cache.fields[name].lengths}
