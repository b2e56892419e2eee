"""One WebDataset tar shard: writer and reader.

Per sample the members are ``<key>.<field>.npy`` and ``<key>.json``, so plain
``webdataset.WebDataset`` and ``tarfile`` read the shard. A sample of the same image as the one
before it has no members for the per-image fields: it shares the previous sample's (its offset
index entries point at them). A ragged field's member holds only the real rows. An int8 field is
one structured array with a record ``(values [D] int8, scale float32)`` per vector: a separate
scale member cost a tar header and a padded block (1 KiB) per field and sample.
Headers carry no time, user or group, so the same samples always give the same bytes. The writer
returns where each member's data starts, which the offset index stores for random access, and
each member's CRC-32, which the reader checks as it reads the member: a run checks exactly the
bytes it uses, and a run that reads only text fields never reads an image grid to check it.
"""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

import numpy as np

from .atomic import finish_atomic, tmp_path
from .fields import FieldSpec
from .keys import member_key
from .npy import load_npy, npy_bytes

Encoded = dict[str, tuple[np.ndarray, "np.ndarray | None"]]


def member_names(fields: dict[str, FieldSpec], with_meta: bool = True) -> list[str]:
    """Member extensions of one sample, in the order they are written (a column group's
    shards have no json: the base's holds it)."""
    return [f"{name}.npy" for name in fields] + (["json"] if with_meta else [])


def int8_records(width: int) -> np.dtype:
    """One stored vector of an int8 field: its ``width`` values and their float32 scale."""
    return np.dtype([("values", np.int8, (width,)), ("scale", "<f4")])


def pack_int8(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """int8 vectors ``[..., D]`` and their scales ``[...]`` as one structured array ``[...]``."""
    if values.dtype != np.int8 or scale.shape != values.shape[:-1]:
        raise ValueError(
            f"int8 storage needs int8 values [..., D] and one scale per vector; got "
            f"{values.dtype}{list(values.shape)} and a scale of shape {list(scale.shape)}"
        )
    packed = np.empty(values.shape[:-1], int8_records(values.shape[-1]))
    packed["values"] = values
    packed["scale"] = scale
    return packed


def unpack_int8(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(values, scale)`` of a :func:`pack_int8` array, as views (decoding copies them)."""
    names = packed.dtype.names or ()
    width = packed.dtype["values"].shape[-1] if "values" in names else 0
    if width == 0 or packed.dtype != int8_records(width):
        raise ValueError(f"holds {packed.dtype}, not int8 values with their float32 scales")
    return packed["values"], packed["scale"]


class TarShardWriter:
    """Writes members directly (header, data, padding), as ``tarfile`` would, without its
    per-member copies: the bytes are those of ``tarfile.open(mode="w", format=PAX_FORMAT)``."""

    suffix = ".tar"

    def __init__(
        self, path: Path, fields: dict[str, FieldSpec], max_rows: int = 0, with_meta: bool = True
    ):
        """``max_rows`` (unused: members need no chunking) and ``with_meta`` (``add`` is given
        None for the json when false) match the HDF5 writer's arguments."""
        self.path = path
        self.fields = fields
        self._tmp = tmp_path(path)
        self._handle = open(self._tmp, "wb")
        self._offset = 0
        # per-image field -> ([offset, size], crc32) of its member last stored
        self._image: dict[str, tuple[list[int], int]] = {}

    @property
    def bytes_written(self) -> int:
        return self._offset

    def add(
        self, key: str, encoded: Encoded, meta: bytes | None, repeat: bool = False
    ) -> tuple[list[int], list[int]]:
        """Append one sample; returns ``[offset, size]`` of each member's data, in member order,
        and each member's CRC-32. ``repeat``: the sample's image is the previous sample's, whose
        per-image members serve."""
        safe = member_key(key)
        locations: list[int] = []
        checksums: list[int] = []
        for name, spec in self.fields.items():
            if repeat and spec.per_image:
                location, checksum = self._image[name]
            else:
                values, scale = encoded[name]
                data = npy_bytes(pack_int8(values, scale) if spec.has_scale else values)
                location, checksum = self._add_member(f"{safe}.{name}.npy", data), zlib.crc32(data)
                if spec.per_image:
                    self._image[name] = location, checksum
            locations += location
            checksums.append(checksum)
        if meta is not None:
            locations += self._add_member(f"{safe}.json", meta)
            checksums.append(zlib.crc32(meta))
        return locations, checksums

    def _add_member(self, name: str, data: bytes) -> list[int]:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        header = info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "strict")
        padding = -len(data) % tarfile.BLOCKSIZE
        self._handle.write(header)
        self._handle.write(data)
        self._handle.write(tarfile.NUL * padding)
        start = self._offset + len(header)
        self._offset = start + len(data) + padding
        return [start, len(data)]

    def close(self) -> None:
        # the end of an archive, as tarfile writes it: two zero blocks, then zeros up to a record
        end = 2 * tarfile.BLOCKSIZE
        end += -(self._offset + end) % tarfile.RECORDSIZE
        self._handle.write(tarfile.NUL * end)
        self._handle.close()
        finish_atomic(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._handle.close()  # may fail again on a full disk, flushing what is buffered
        except OSError:
            pass
        self._tmp.unlink(missing_ok=True)


class TarShardReader:
    """Reads samples of one tar shard through its offset index (sequentially or by row)."""

    def __init__(
        self, path: Path, fields: dict[str, FieldSpec], index: dict, with_meta: bool = True
    ):
        self.path = path
        self.fields = fields
        self.with_meta = with_meta
        names = member_names(fields, with_meta)
        if index.get("members") != names:
            raise ValueError(
                f"{path}: the offset index lists members {index.get('members')} but the manifest "
                f"declares {names}; the cache is inconsistent: run python -m extract.verify"
            )
        # [rows, 2 * members] (data offset, size): an array, not JSON's lists of Python ints,
        # which cost about 0.6 KB per sample of a reader's memory
        self.offsets = np.array(index["offsets"], dtype=np.int64).reshape(-1, 2 * len(names))
        self.checksums = np.array(index["crc32"], dtype=np.uint32).reshape(-1, len(names))
        self.keys = index["keys"]
        self.members = names
        self._handle = None
        self._image: dict[str, tuple[tuple[int, int], tuple]] = {}  # field -> (span, arrays)

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, row: int, wanted: set[str] | None = None) -> tuple[dict, bytes | None]:
        """Stored arrays ``{field: (values, scale)}`` and the json bytes of one sample (None in
        a column group's shard)."""
        if self._handle is None:
            self._handle = open(self.path, "rb")
        offsets = self.offsets[row].tolist()
        spans = list(zip(offsets[0::2], offsets[1::2], self.checksums[row].tolist(), strict=True))
        arrays = {}
        for member, (name, spec) in enumerate(self.fields.items()):
            span = spans[member]
            if wanted is not None and name not in wanted:
                continue
            if spec.per_image:  # consecutive samples of one image share the member: read once
                last = self._image.get(name)
                if last is None or last[0] != span:
                    self._image[name] = last = (span, self._load(row, member, span, spec.has_scale))
                arrays[name] = tuple(None if a is None else a.copy() for a in last[1])
                continue
            arrays[name] = self._load(row, member, span, spec.has_scale)
        meta = self._read_member(row, len(spans) - 1, spans[-1]) if self.with_meta else None
        return arrays, meta

    def iterate(self, wanted: set[str] | None = None):
        """All samples in order (the reads run forward through the file)."""
        for row in range(len(self.offsets)):
            yield self.read(row, wanted)

    def _read_member(self, row: int, member: int, span: tuple[int, int, int]) -> bytearray:
        """A member's data (``span``: its offset, size and CRC-32 in the offset index), checked."""
        offset, size, checksum = span
        self._handle.seek(offset)
        data = bytearray(size)  # a bytearray: the arrays loaded from it are writable
        if self._handle.readinto(data) != size:
            raise ValueError(
                f"{self.path}: truncated (wanted {size} bytes at offset {offset}); "
                "run python -m extract.verify and extract again"
            )
        if zlib.crc32(data) != checksum:
            raise ValueError(
                f"{self.path}: sample {self.keys[row]!r}, member {self.members[member]!r}: its "
                "bytes differ from their CRC-32 in the offset index (the shard was changed); "
                "run python -m extract.verify and extract again"
            )
        return data

    def _load(
        self, row: int, member: int, span: tuple[int, int, int], int8: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``(values, scale)`` of one field's member (``scale`` is None unless ``int8``)."""
        data = self._read_member(row, member, span)
        try:
            stored = load_npy(data)
            return unpack_int8(stored) if int8 else (stored, None)
        except ValueError as error:
            raise ValueError(
                f"{self.path}: the member at offset {span[0]} {error}; "
                "run python -m extract.verify and extract again"
            ) from None

    def close(self) -> None:
        self._image = {}
        if self._handle is not None:
            self._handle.close()
            self._handle = None
