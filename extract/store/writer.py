"""Writing a cache: shards per split (with resume), shared data, and the manifest last.

Usage::

    builder = CacheBuilder(out_dir, spec)
    if not builder.complete:                      # same key already finished: nothing to do
        with builder.split("train") as split:
            for position, sample in enumerate(samples):
                if position < split.resume_position:
                    continue                      # finished shards are never decoded again
                split.write(sample.key, sample.arrays, sample.meta)
        builder.put_shared("answer_vocab", vocab_embeddings)
        builder.finish(timing=...)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import read_json, sha256_file, write_bytes_atomic, write_json_atomic
from .fields import encode, nonfinite
from .layout import (
    PENDING_SPEC,
    SHARED_DIR,
    WRITERS,
    group_dir,
    index_path,
    relative,
    shard_path,
    shard_stem,
)
from .manifest import (
    MANIFEST_NAME,
    CacheSpec,
    FileRecord,
    GroupRecord,
    GroupSpec,
    Manifest,
    ShardRecord,
    SplitRecord,
    describe_differences,
    load_manifest,
    save_manifest,
)
from .tar_shard import member_names

log = logging.getLogger(__name__)
SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def file_record(cache_dir: Path, path: Path) -> FileRecord:
    return FileRecord(relative(cache_dir, path), path.stat().st_size, sha256_file(path))


@dataclass(frozen=True)
class ShardPlan:
    """Shards as fixed ranges of input positions: shard ``n`` covers positions
    ``[n * size, (n + 1) * size)`` of a split of ``total`` samples, written or skipped.

    With the plan known before any sample is encoded, shards can be written in any order and by
    any process (a rank-parallel extraction), and each one's bytes depend only on its inputs.
    """

    size: int
    total: int

    @property
    def count(self) -> int:
        return max(1, -(-self.total // self.size))  # an empty split still gets one empty shard

    def bounds(self, number: int) -> tuple[int, int]:
        return number * self.size, min((number + 1) * self.size, self.total)


class SplitWriter:
    """Writes one split's samples into shards, closing a shard at the count or byte limit, or,
    with a :class:`ShardPlan`, at the end of each planned range (:meth:`begin` / :meth:`end`).

    A shard exists under its real name only once complete (tar, then its offset index, both
    renamed into place), so after a crash the finished shards are found again and
    :attr:`resume_position` tells the caller how many input samples they cover (with a plan:
    :meth:`missing` says which shards are left, wherever they are in the split).
    """

    def __init__(
        self,
        cache_dir: Path,
        split: str,
        spec: CacheSpec,
        allow_nonfinite: bool = False,
        plan: ShardPlan | None = None,
        clean: bool = True,
        inputs: list[str] | None = None,
        beside: str | None = None,
        with_meta: bool = True,
    ):
        """``with_meta``: store each sample's json (a column group's shards do not).
        ``inputs``: with a plan, the keys of the split's inputs by position; a shard on disk
        counts as finished only if it was written to this plan and holds (written or skipped)
        exactly its range's keys, and, with ``beside`` (a suffix), has that file next to it."""
        if not SPLIT_NAME.match(split):
            raise ValueError(
                f"split name {split!r} is not allowed: use letters, digits, '_' and '-' "
                "(e.g. 'train', 'test_shifted')"
            )
        self.cache_dir, self.split, self.spec = cache_dir, split, spec
        self.allow_nonfinite, self.plan, self.inputs = allow_nonfinite, plan, inputs
        self.beside, self.with_meta = beside, with_meta
        (cache_dir / split).mkdir(parents=True, exist_ok=True)
        self.done: list[ShardRecord] = []
        self.keys: set[str] = set()
        self.finished: dict[int, ShardRecord] = {}
        self._number: int | None = None
        if plan is None:
            self._find_finished_shards()
        else:
            self._find_planned_shards(clean)
        self.position = self.resume_position
        self._shard = None
        self._image: tuple[str, dict] | None = None
        self._index: dict[str, Any] = {}
        self._skipped: list[dict[str, Any]] = []
        self.closed = False

    @property
    def resume_position(self) -> int:
        return self.done[-1].stop if self.done else 0

    def _find_finished_shards(self) -> None:
        number = 0
        while (idx := index_path(self.cache_dir, self.split, number)).is_file():
            shard = shard_path(self.cache_dir, self.split, number, self.spec.format)
            index = read_json(idx)
            if not shard.is_file() or shard.stat().st_size != index["file"]["bytes"]:
                break
            self.done.append(self._record(index, idx))
            self.keys.update(index["keys"])
            number += 1
        if number:
            log.info(
                "%s: resuming after %d finished shards (%d samples)",
                self.split,
                number,
                sum(s.count for s in self.done),
            )
        for stale in (self.cache_dir / self.split).iterdir():
            if stale.name.endswith(".tmp") or _shard_number(stale.name) >= number:
                stale.unlink()

    def _find_planned_shards(self, clean: bool) -> None:
        """Every finished shard, wherever it is; with ``clean``, the files of unfinished ones
        (and temporary files) are removed: one process does that before any starts writing."""
        for number in range(self.plan.count):
            idx = index_path(self.cache_dir, self.split, number)
            shard = shard_path(self.cache_dir, self.split, number, self.spec.format)
            if idx.is_file() and shard.is_file():
                index = read_json(idx)
                if shard.stat().st_size == index["file"]["bytes"] and self._covers(number, index):
                    self.finished[number] = self._record(index, idx)
        if self.finished:
            log.info(
                "%s: %d of %d shards already finished",
                self.split,
                len(self.finished),
                self.plan.count,
            )
        if clean:  # only shard files: anything else a user put there stays
            for stale in (self.cache_dir / self.split).iterdir():
                number = _shard_number(stale.name)
                if stale.is_file() and (
                    stale.name.endswith(".tmp") or (number >= 0 and number not in self.finished)
                ):
                    stale.unlink()

    def _covers(self, number: int, index: dict) -> bool:
        """Whether a shard on disk holds its planned range's inputs (a shard written with other
        limits, or by a run that closed shards otherwise, does not and is written again)."""
        if index.get("plan") != [self.plan.size, self.plan.total]:
            return False  # written by another plan, or before shards were planned
        if self.beside is not None:
            stem = self.cache_dir / shard_stem(self.split, number)
            if not stem.with_name(stem.name + self.beside).is_file():
                return False
        if self.inputs is None:
            return True
        start, stop = self.plan.bounds(number)
        held = index["keys"] + [skipped["key"] for skipped in index["skipped"]]
        return index["stop"] == stop and sorted(held) == sorted(self.inputs[start:stop])

    def add_finished(self, records: dict[int, ShardRecord]) -> None:
        """Shards other processes finished (so closing need not find them on a shared disk
        whose directory listings may lag behind other machines)."""
        self.finished.update(records)

    def stems(self) -> list[Path]:
        """Every planned shard's path without its suffix (files beside a shard share it)."""
        return [self.cache_dir / shard_stem(self.split, n) for n in range(self.plan.count)]

    def missing(self) -> list[int]:
        """The planned shards not finished yet, in order."""
        return [n for n in range(self.plan.count) if n not in self.finished]

    def begin(self, number: int) -> None:
        """Start planned shard ``number`` (its inputs are positions ``plan.bounds(number)``)."""
        self._check_open()
        if self._shard is not None:
            raise RuntimeError(f"shard {self._number} of {self.split!r} is still open")
        self._number = number
        self.position = self.plan.bounds(number)[0]
        self._open_shard()

    def end(self, before_index: Callable[[Path], None] | None = None) -> ShardRecord:
        """Finish the open planned shard. ``before_index(stem)`` may write files that belong to
        the shard (e.g. its sums for the means): they exist before the shard counts as done."""
        if before_index is not None:
            before_index(self.cache_dir / shard_stem(self.split, self._number))
        self.position = self.plan.bounds(self._number)[1]
        self._finish_shard()
        record = self.done.pop()
        self.finished[self._number] = record
        self._number = None
        return record

    def _record(self, index: dict, idx: Path) -> ShardRecord:
        return ShardRecord(
            file=FileRecord(**index["file"]),
            index=file_record(self.cache_dir, idx),
            count=len(index["keys"]),
            stop=index["stop"],
            skipped=index["skipped"],
        )

    def write(
        self,
        key: str,
        arrays: dict[str, np.ndarray],
        meta: dict[str, Any] | None = None,
        position: int | None = None,
        image: str | None = None,
    ) -> dict:
        """Add one sample. ``position`` is its place in the input order (default: the next one).
        ``image`` names the sample's image: when the previous sample of the shard names the same
        one, its per-image fields are not stored again (the previous sample's serve both).

        Returns the stored form ``{field: (values, scale)}``.
        """
        self._check_open()
        key = str(key)
        if key in self.keys:
            raise ValueError(
                f"split {self.split!r}: sample key {key!r} occurs twice; keys must be unique"
            )
        repeat = image is not None and self._image is not None and self._image[0] == image
        encoded = self._encode(key, arrays, self._image[1] if repeat else None)
        meta_bytes = self.meta_bytes(key, meta or {}) if self.with_meta else None
        size = len(meta_bytes or b"") + sum(
            v.nbytes + (0 if s is None else s.nbytes)
            for name, (v, s) in encoded.items()
            if not (repeat and self.spec.fields[name].per_image)
        )
        if self.plan is not None:
            if self._shard is None:
                raise RuntimeError("begin(number) a planned shard before writing to it")
        elif (
            self._shard is not None
            and self._shard.bytes_written + size > self.spec.limits.max_bytes
        ):
            self._finish_shard()
            repeat = False  # a new shard stores its first sample's image
        if self._shard is None:
            self._open_shard()
        self._index["keys"].append(key)
        locations, checksums = self._shard.add(key, encoded, meta_bytes, repeat)
        self._index["offsets"].append(locations)
        self._index["crc32"].append(checksums)
        if not repeat:
            per_image = {n: v for n, v in encoded.items() if self.spec.fields[n].per_image}
            self._image = None if image is None else (image, per_image)
        self.keys.add(key)
        self.position = (self.position if position is None else position) + 1
        if self.plan is None and len(self._index["keys"]) >= self.spec.limits.max_count:
            self._finish_shard()
        return encoded

    def skip(
        self, key: str, reason: str, position: int | None = None, image: str | None = None
    ) -> None:
        """Record an input sample that could not be used (e.g. a corrupt image, named by
        ``image``); never silent."""
        self._check_open()
        where = self.position if position is None else position
        entry = {"key": str(key), "position": where, "reason": reason}
        self._skipped.append(entry if image is None else {**entry, "image": image})
        self.position = where + 1

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError(f"split {self.split!r} is already closed")

    def _encode(self, key: str, arrays: dict[str, np.ndarray], shared: dict | None) -> dict:
        """Every field's stored form; ``shared``: the per-image fields, already stored."""
        fields = self.spec.fields
        if set(arrays) != set(fields):
            missing, extra = sorted(set(fields) - set(arrays)), sorted(set(arrays) - set(fields))
            raise ValueError(f"sample {key!r}: missing fields {missing}, undeclared fields {extra}")
        encoded = dict(shared or {})
        for name, spec in fields.items():  # lengths fields before the ragged ones they measure
            if name not in encoded and not spec.lengths:
                encoded[name] = encode(spec, arrays[name], key)
        for name, spec in fields.items():
            if name not in encoded:
                encoded[name] = encode(spec, arrays[name], key, encoded[spec.lengths][0])
        if not self.allow_nonfinite:
            for name, (values, scale) in encoded.items():
                if nonfinite(values) or (scale is not None and nonfinite(scale)):
                    raise ValueError(
                        f"sample {key!r}, field {name!r}: NaN or infinite values (after conversion "
                        f"to {fields[name].storage}); check the producer, or use fp32 storage if "
                        "the values overflow float16"
                    )
        return {name: encoded[name] for name in fields}

    @staticmethod
    def meta_bytes(key: str, meta: dict[str, Any]) -> bytes:
        if "key" in meta and meta["key"] != key:
            raise ValueError(
                f"sample {key!r}: its json already holds a different 'key' ({meta['key']!r})"
            )
        return json.dumps({**meta, "key": key}, sort_keys=True, ensure_ascii=False).encode("utf-8")

    def _open_shard(self) -> None:
        number = len(self.done) if self._number is None else self._number
        path = shard_path(self.cache_dir, self.split, number, self.spec.format)
        self._shard = WRITERS[self.spec.format](
            path, self.spec.fields, self.spec.limits.max_count, self.with_meta
        )
        self._index = {"format": self.spec.format, "keys": [], "offsets": [], "crc32": []}
        self._image = None  # (image, its stored per-image fields) of the shard's last sample
        if self.spec.format == "wds":
            self._index["members"] = member_names(self.spec.fields, self.with_meta)

    def _finish_shard(self) -> None:
        number = len(self.done) if self._number is None else self._number
        self._shard.close()
        self._index["file"] = file_record(self.cache_dir, self._shard.path).__dict__
        self._index["stop"] = self.position
        self._index["skipped"], self._skipped = self._skipped, []
        if self.plan is not None:
            self._index["plan"] = [self.plan.size, self.plan.total]
        if self.spec.format == "hdf5":
            del self._index["offsets"]  # rows are positions; nothing to look up
            if not self.with_meta:
                del self._index["crc32"]  # the json's only; the arrays' are HDF5's own
        self._image = None
        idx = index_path(self.cache_dir, self.split, number)
        write_bytes_atomic(idx, json.dumps(self._index, separators=(",", ":")).encode())
        self.done.append(self._record(self._index, idx))
        self._shard = None

    def close(self) -> SplitRecord:
        """Finish the open shard. Skipped samples after the last sample get a shard of their own.

        With a plan, every planned shard must be finished (by this process or others): their
        records are read from the disk, in order."""
        if self.plan is not None:
            return self._close_planned()
        if not self.closed:
            if self._shard is None and (self._skipped or not self.done):
                self._open_shard()
            if self._shard is not None:
                self._finish_shard()
            self.closed = True
        return SplitRecord(shards=list(self.done))

    def _close_planned(self) -> SplitRecord:
        if self._shard is not None:
            raise RuntimeError(f"shard {self._number} of {self.split!r} is still open")
        if self.missing():
            known = dict(self.finished)
            self._find_planned_shards(clean=False)
            self.finished.update(known)
        if self.missing():
            raise RuntimeError(
                f"split {self.split!r}: shards {self.missing()[:5]} were never finished; run the "
                "same extraction command again to write them"
            )
        self.done = [self.finished[n] for n in range(self.plan.count)]
        if self.inputs is not None:  # the caller checked its inputs' keys are unique
            self.closed = True
            return SplitRecord(shards=list(self.done))
        seen: set[str] = set()
        for number in range(self.plan.count):
            keys = read_json(index_path(self.cache_dir, self.split, number))["keys"]
            for key in keys:
                if key in seen:
                    raise ValueError(
                        f"split {self.split!r}: sample key {key!r} occurs twice (shard "
                        f"{number}); keys must be unique"
                    )
                seen.add(key)
        self.closed = True
        return SplitRecord(shards=list(self.done))

    def abort(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None
        self.closed = True

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def _shard_number(name: str) -> int:
    """The number in ``<split>-000012.tar`` (or .h5, .idx.json); -1 for anything else."""
    stem = name.split(".", 1)[0]
    digits = stem.rsplit("-", 1)[-1]
    return int(digits) if digits.isdigit() else -1


class CacheBuilder:
    """Owns one cache directory while it is written; see the module docstring.

    ``groups``: column groups to write (each in ``groups/<name>/``, aligned with the base). On a
    finished cache with the same base, only the groups it lacks are written (:attr:`complete`
    says whether anything is left) and the manifest gains them; the base and the groups already
    there are not touched.
    """

    def __init__(
        self,
        cache_dir: str | Path,
        spec: CacheSpec,
        allow_nonfinite: bool = False,
        owner: bool = True,
        groups: list[GroupSpec] | tuple = (),
    ):
        """``owner=False``: another process (rank 0 of a rank-parallel extraction) started the
        cache and will finish it; this one only writes shards."""
        self.cache_dir = Path(cache_dir)
        self.spec = spec
        self.allow_nonfinite = allow_nonfinite
        self.existing: Manifest | None = None
        self.base_complete = self._check_existing()
        self.new_groups = self._check_groups(list(groups))
        self.complete = self.base_complete and not self.new_groups
        self.splits: dict[str, SplitWriter] = {}
        self.group_splits: dict[str, dict[str, SplitWriter]] = {g: {} for g in self.new_groups}
        self.shared: dict[str, FileRecord] = {}
        self.group_shared: dict[str, dict[str, FileRecord]] = {g: {} for g in self.new_groups}
        if owner and not self.base_complete:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.cache_dir / PENDING_SPEC, spec.to_json())
        if owner:
            for name, group in self.new_groups.items():
                write_json_atomic(group_dir(self.cache_dir, name) / PENDING_SPEC, group.to_json())

    def _check_existing(self) -> bool:
        if (self.cache_dir / MANIFEST_NAME).is_file():
            self.existing = load_manifest(self.cache_dir)
            self._refuse_if_different(self.existing.spec.to_json(), "holds a finished cache")
            return True
        pending = self.cache_dir / PENDING_SPEC
        if pending.is_file():
            self._refuse_if_different(read_json(pending), "holds an unfinished extraction")
        return False

    def _check_groups(self, groups: list[GroupSpec]) -> dict[str, GroupSpec]:
        """The groups still to write; a group of the same name made otherwise is refused."""
        held = self.existing.groups if self.existing is not None else {}
        new = {}
        for group in groups:
            shared = sorted(set(group.fields) & set(self.spec.fields))
            if shared:
                raise ValueError(
                    f"column group {group.name!r} declares fields {shared} of the base; a "
                    "group's fields must have names of their own"
                )
            if group.name in held:
                old = held[group.name].spec.to_json()
                where = f"column group {group.name!r} of {self.cache_dir}"
                self._refuse_if_different(old, f"has a {where}", group.to_json())
                continue
            pending = group_dir(self.cache_dir, group.name) / PENDING_SPEC
            if pending.is_file():
                what = f"holds an unfinished column group {group.name!r}"
                self._refuse_if_different(read_json(pending), what, group.to_json())
            new[group.name] = group
        return new

    def _refuse_if_different(self, existing: dict, what: str, wanted: dict | None = None) -> None:
        differences = describe_differences(existing, wanted or self.spec.to_json())
        if differences:
            raise ValueError(
                f"{self.cache_dir} {what} made with different settings:\n  "
                + "\n  ".join(differences)
                + "\nUse another --out directory (or another group name), or delete it to "
                "replace it."
            )

    def split(
        self,
        name: str,
        plan: ShardPlan | None = None,
        clean: bool = True,
        inputs: list[str] | None = None,
        beside: str | None = None,
        group: str | None = None,
    ) -> SplitWriter:
        """The writer of split ``name``: the base's, or column group ``group``'s (its shards
        hold no json)."""
        if group is None and self.base_complete:
            raise RuntimeError(f"{self.cache_dir}: the base is finished; nothing to write")
        written = self.splits if group is None else self.group_splits[group]
        if name in written:
            raise ValueError(f"split {name!r} was already written in this run")
        root = self.cache_dir if group is None else group_dir(self.cache_dir, group)
        spec = self.spec if group is None else self.part_spec(group)
        written[name] = SplitWriter(
            root, name, spec, self.allow_nonfinite, plan, clean, inputs, beside,
            with_meta=group is None,
        )  # fmt: skip
        return written[name]

    def part_spec(self, group: str) -> CacheSpec:
        """What a group's shard writer needs: the base's format and limits, the group's fields."""
        spec = self.new_groups[group]
        return replace(self.spec, fields=spec.fields, config=spec.config)

    def put_shared(
        self, name: str, value: np.ndarray | dict | list, group: str | None = None
    ) -> FileRecord:
        """Store data shared by all samples (e.g. an answer vocabulary) once, in ``shared/``
        (the group's own, with ``group``)."""
        root = self.cache_dir if group is None else group_dir(self.cache_dir, group)
        if isinstance(value, np.ndarray):
            from .npy import npy_bytes

            path, data = root / SHARED_DIR / f"{name}.npy", npy_bytes(value)
        else:
            text = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=1)
            path, data = root / SHARED_DIR / f"{name}.json", text.encode("utf-8")
        write_bytes_atomic(path, data)
        record = file_record(root, path)
        (self.shared if group is None else self.group_shared[group])[name] = record
        return record

    def record_file(self, path: str | Path, group: str | None = None) -> FileRecord:
        """Fingerprint a file written into the cache by someone else (e.g. a FAISS index)."""
        root = self.cache_dir if group is None else group_dir(self.cache_dir, group)
        return file_record(root, Path(path))

    def preview(self) -> Manifest:
        """The manifest of what is written so far (finished shards only); nothing is saved."""
        if self.existing is not None:
            base = replace(self.existing, groups=dict(self.existing.groups))
        else:
            records = {n: SplitRecord(shards=list(w.done)) for n, w in self.splits.items()}
            base = Manifest(spec=self.spec, splits=records, shared=dict(self.shared))
        for name, writers in self.group_splits.items():
            records = {n: SplitRecord(shards=list(w.done)) for n, w in writers.items()}
            base.groups[name] = GroupRecord(
                self.new_groups[name], records, dict(self.group_shared[name])
            )
        return base

    def finish(
        self,
        indices: dict | None = None,
        runtime: dict | None = None,
        timing: dict | None = None,
        group_indices: dict[str, dict] | None = None,
        group_timing: dict | None = None,
    ) -> Manifest:
        """Close every split and write the manifest: the cache (or its new groups) exists from
        this moment on. Each new group's shards must hold the base's keys, row for row."""
        if self.existing is not None:
            manifest = replace(self.existing, groups=dict(self.existing.groups))
        else:
            records = {name: writer.close() for name, writer in self.splits.items()}
            manifest = Manifest(
                spec=self.spec,
                splits=records,
                shared=self.shared,
                indices=indices or {},
                runtime=runtime or {},
                timing=timing or {},
            )
        for name, writers in self.group_splits.items():
            records = {split: writer.close() for split, writer in writers.items()}
            check_aligned(self.cache_dir, manifest, name, records)
            manifest.groups[name] = GroupRecord(
                spec=self.new_groups[name],
                splits=records,
                shared=self.group_shared[name],
                indices=(group_indices or {}).get(name, {}),
                timing=group_timing or {},
            )
        save_manifest(self.cache_dir, manifest)
        (self.cache_dir / PENDING_SPEC).unlink(missing_ok=True)
        for name in self.new_groups:
            (group_dir(self.cache_dir, name) / PENDING_SPEC).unlink(missing_ok=True)
        self.complete = self.base_complete = True
        return manifest


def check_aligned(
    cache_dir: Path, manifest: Manifest, group: str, records: dict[str, SplitRecord]
) -> None:
    """A group's shards hold the base's keys in the base's order, shard for shard."""
    for split, base in manifest.splits.items():
        if split not in records:
            raise ValueError(f"column group {group!r} lacks split {split!r} of the base")
        shards = records[split].shards
        if len(shards) != len(base.shards):
            raise ValueError(
                f"column group {group!r}, split {split!r}: {len(shards)} shards, the base has "
                f"{len(base.shards)}"
            )
        for number, (mine, theirs) in enumerate(zip(shards, base.shards, strict=True)):
            keys = read_json(group_dir(cache_dir, group) / mine.index.name)["keys"]
            if keys != read_json(cache_dir / theirs.index.name)["keys"]:
                raise ValueError(
                    f"column group {group!r}, split {split!r}, shard {number}: its keys are not "
                    "the base's, row for row; delete "
                    f"{group_dir(cache_dir, group)} and add the group again"
                )
