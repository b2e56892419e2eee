"""One HDF5 shard: writer and reader (``--format hdf5``).

Layout, readable with plain h5py: ``fields/<name>`` in the storage dtype, chunked by rows;
``scales/<name>`` (float32, one per vector) beside int8 fields; ``keys`` and ``meta`` (the sample
json) as UTF-8 strings. A field has one row per sample (``[N, *shape]``), except:
- a per-image field has one row per run of consecutive samples of one image, and ``image_row``
  (``[N]`` int32) gives each sample's row;
- a ragged field is ``[sum of all lengths, *shape[2:]]``, and ``starts/<name>`` (``[N + 1]``
  int64) gives each sample's first row; its candidates' lengths are its lengths field's row.
Rows are buffered and written a chunk at a time. Every array dataset has HDF5's Fletcher-32
filter, so HDF5 checks each chunk it reads; the json strings (in HDF5's heap, where no filter
applies) have their CRC-32s in the shard's offset index, checked by the reader.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .atomic import finish_atomic, tmp_path
from .fields import FieldSpec

CHUNK_BYTES = 1 << 20
MAX_CHUNK_ROWS = 1024


def rows_per_chunk(spec: FieldSpec, max_rows: int) -> int:
    """About 1 MiB per chunk, never more rows than a shard holds (ragged: than its texts')."""
    shape = spec.shape[2:] if spec.lengths else spec.shape
    limit = max_rows * int(np.prod(spec.shape[:2])) if spec.lengths else max_rows
    row_bytes = max(1, int(np.prod(shape, dtype=np.int64)) * spec.dtype.itemsize)
    return int(max(1, min(MAX_CHUNK_ROWS * 16, limit, CHUNK_BYTES // row_bytes)))


def row_shape(spec: FieldSpec) -> tuple[int, ...]:
    """One stored row: a sample's (or an image's) array, or one real row of a ragged field."""
    return spec.shape[2:] if spec.lengths else spec.shape


def scale_row_shape(spec: FieldSpec) -> tuple[int, ...]:
    return row_shape(spec)[:-1]


class H5ShardWriter:
    suffix = ".h5"

    def __init__(
        self,
        path: Path,
        fields: dict[str, FieldSpec],
        max_rows: int = MAX_CHUNK_ROWS,
        with_meta: bool = True,
    ):
        import h5py

        self.path = path
        self.fields = fields
        self.with_meta = with_meta
        self._tmp = tmp_path(path)
        self._file = h5py.File(self._tmp, "w", libver="earliest", track_order=False)
        text = h5py.string_dtype("utf-8")
        text_rows = (min(256, max_rows),)
        self._file.create_dataset("keys", (0,), dtype=text, maxshape=(None,), chunks=text_rows)
        if with_meta:  # a column group's shards have none: the base's hold the json
            self._file.create_dataset("meta", (0,), dtype=text, maxshape=(None,), chunks=text_rows)
        if self._per_image():
            self._grow("image_row", (), np.int32, min(4096, max_rows))
        for name, spec in fields.items():
            rows = rows_per_chunk(spec, max_rows)
            self._grow(f"fields/{name}", row_shape(spec), spec.dtype, rows)
            if spec.has_scale:
                self._grow(f"scales/{name}", scale_row_shape(spec), np.float32, rows)
            if spec.lengths:
                self._file.create_dataset(
                    f"starts/{name}", data=np.zeros(1, np.int64), maxshape=(None,),
                    chunks=(4096,), fletcher32=True,
                )  # fmt: skip
        self._pending: list[tuple[str, dict, bytes, bool]] = []
        self._rows = 0
        self._images = 0  # rows of the per-image fields
        self._bytes = 0

    def _per_image(self) -> bool:
        return any(spec.per_image for spec in self.fields.values())

    def _grow(self, name: str, shape: tuple[int, ...], dtype, rows: int) -> None:
        self._file.create_dataset(
            name, (0, *shape), dtype=dtype, maxshape=(None, *shape), chunks=(rows, *shape),
            fletcher32=True,  # each chunk's checksum, checked by HDF5 whenever it reads it
        )  # fmt: skip

    @property
    def bytes_written(self) -> int:
        return self._bytes

    def add(
        self, key: str, encoded: dict, meta: bytes | None, repeat: bool = False
    ) -> tuple[list[int], list[int]]:
        """Append one sample; ``repeat``: its image is the previous sample's (rows shared).
        Returns its row and its json's CRC-32 (the arrays' chunks carry HDF5's checksums; the
        json strings, in HDF5's heap, have none of their own)."""
        self._pending.append((key, encoded, meta, repeat))
        self._bytes += len(meta or b"") + sum(
            v.nbytes + (0 if s is None else s.nbytes)
            for name, (v, s) in encoded.items()
            if not (repeat and self.fields[name].per_image)
        )
        row = self._rows + len(self._pending) - 1
        if len(self._pending) >= MAX_CHUNK_ROWS:
            self._flush()
        return [row], [] if meta is None else [zlib.crc32(meta)]

    def _flush(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        self._append("keys", [key for key, _, _, _ in pending])
        if self.with_meta:
            self._append("meta", [meta.decode("utf-8") for _, _, meta, _ in pending])
        new = [not repeat for *_, repeat in pending]  # stores its image's per-image rows
        if self._per_image():
            rows = self._images - 1 + np.cumsum(new)
            self._append("image_row", rows.astype(np.int32))
            self._images += int(sum(new))
        for name, spec in self.fields.items():
            kept = [
                encoded[name]
                for number, (_, encoded, _, repeat) in enumerate(pending)
                if not spec.per_image or new[number]
            ]
            if not kept:  # every sample of this flush repeats the image before it
                continue
            join = np.concatenate if spec.lengths else np.stack
            self._append(f"fields/{name}", join([values for values, _ in kept]))
            if spec.has_scale:
                self._append(f"scales/{name}", join([scale for _, scale in kept]))
            if spec.lengths:
                counts = [len(values) for values, _ in kept]
                last = self._file[f"starts/{name}"][-1]
                self._append(f"starts/{name}", last + np.cumsum(counts, dtype=np.int64))
        self._rows += len(pending)

    def _append(self, name: str, values) -> None:
        dataset = self._file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values

    def close(self) -> None:
        self._flush()
        self._file.close()
        finish_atomic(self._tmp, self.path)

    def abort(self) -> None:
        try:
            self._file.close()  # may fail again on a full disk, flushing what is buffered
        except (OSError, RuntimeError):
            pass
        self._tmp.unlink(missing_ok=True)


class H5ShardReader:
    """Reads rows of one HDF5 shard; the file is opened on first use (after a DataLoader fork)."""

    def __init__(
        self, path: Path, fields: dict[str, FieldSpec], index: dict, with_meta: bool = True
    ):
        self.path = path
        self.fields = fields
        self.with_meta = with_meta
        self.count = len(index["keys"])
        self.keys = index["keys"]
        self.meta_checksums = [row[0] for row in index["crc32"]] if with_meta else None
        self._file = None
        self._image_row: np.ndarray | None = None
        self._starts: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return self.count

    def _open(self):
        if self._file is None:
            import h5py

            try:
                self._file = h5py.File(self.path, "r")
            except OSError as error:
                raise ValueError(
                    f"{self.path}: cannot be opened as HDF5 ({error}): the file was changed; run "
                    "python -m extract.verify and extract again"
                ) from None
            rows = self._file["keys"].shape[0]
            if rows != self.count:
                raise ValueError(
                    f"{self.path}: holds {rows} rows but its index lists {self.count}; "
                    "run python -m extract.verify and extract again"
                )
            if "image_row" in self._file:
                self._image_row = self._get("image_row", slice(None))
            starts = self._file.get("starts", {})
            self._starts = {name: self._get(f"starts/{name}", slice(None)) for name in starts}
        return self._file

    def _rows(self, name: str, spec: FieldSpec, start: int, stop: int) -> tuple[int, int]:
        """The stored rows of samples ``start`` to ``stop`` of one field."""
        if spec.lengths:
            return int(self._starts[name][start]), int(self._starts[name][stop])
        if spec.per_image:
            return int(self._image_row[start]), int(self._image_row[stop - 1]) + 1
        return start, stop

    def read(self, row: int, wanted: set[str] | None = None) -> tuple[dict, bytes]:
        self._open()
        arrays = {}
        for name, spec in self.fields.items():
            if wanted is not None and name not in wanted:
                continue
            low, high = self._rows(name, spec, row, row + 1)
            pick = slice(low, high) if spec.lengths else low
            values = self._get(f"fields/{name}", pick)
            scale = self._get(f"scales/{name}", pick) if spec.has_scale else None
            arrays[name] = (np.asarray(values), None if scale is None else np.asarray(scale))
        return arrays, self._meta(row, self._get("meta", row)) if self.with_meta else None

    def iterate(self, wanted: set[str] | None = None):
        """All rows in order, read a block at a time (much faster than row by row in h5py)."""
        self._open()
        for start in range(0, self.count, MAX_CHUNK_ROWS):
            stop = min(self.count, start + MAX_CHUNK_ROWS)
            block = {}
            for name, spec in self.fields.items():
                if wanted is not None and name not in wanted:
                    continue
                low, high = self._rows(name, spec, start, stop)
                values = self._get(f"fields/{name}", slice(low, high))
                scales = self._get(f"scales/{name}", slice(low, high)) if spec.has_scale else None
                block[name] = (spec, low, values, scales)
            metas = (
                self._get("meta", slice(start, stop)) if self.with_meta else [None] * (stop - start)
            )
            for offset, meta in enumerate(metas):
                row = start + offset
                arrays = {}
                for name, (spec, low, values, scales) in block.items():
                    first, last = self._rows(name, spec, row, row + 1)
                    pick = slice(first - low, last - low) if spec.lengths else first - low
                    arrays[name] = (values[pick], None if scales is None else scales[pick])
                    if spec.per_image:  # its samples would share one row's memory
                        arrays[name] = tuple(None if a is None else a.copy() for a in arrays[name])
                yield arrays, None if meta is None else self._meta(row, meta)

    def _get(self, name: str, pick) -> np.ndarray:
        """Rows of one dataset; a chunk whose checksum fails is named as one line."""
        try:
            return self._file[name][pick]
        except (OSError, KeyError) as error:
            raise ValueError(
                f"{self.path}: dataset {name!r} cannot be read ({error}): a chunk's Fletcher-32 "
                "checksum failed or the file's structure was changed; run python -m "
                "extract.verify and extract again"
            ) from None

    def _meta(self, row: int, meta) -> bytes:
        data = as_bytes(meta)
        if zlib.crc32(data) != self.meta_checksums[row]:
            raise ValueError(
                f"{self.path}: sample {self.keys[row]!r}: its json differs from its CRC-32 in "
                "the offset index (the file was changed); run python -m extract.verify and "
                "extract again"
            )
        return data

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def as_bytes(meta) -> bytes:
    return meta if isinstance(meta, bytes) else meta.encode("utf-8")
