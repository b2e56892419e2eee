"""One HDF5 shard: writer and reader (``--format hdf5``).

Layout, readable with plain h5py: ``fields/<name>`` with shape ``[N, *shape]`` in the storage
dtype, chunked by rows; ``scales/<name>`` (float32, one per vector) beside int8 fields; ``keys``
and ``meta`` (the sample json) as UTF-8 strings. Rows are buffered and written a chunk at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .atomic import finish_atomic, tmp_path
from .fields import FieldSpec

CHUNK_BYTES = 1 << 20
MAX_CHUNK_ROWS = 1024


def rows_per_chunk(spec: FieldSpec, max_rows: int) -> int:
    """About 1 MiB per chunk, never more rows than a shard holds."""
    row_bytes = max(1, int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize)
    return int(max(1, min(MAX_CHUNK_ROWS, max_rows, CHUNK_BYTES // row_bytes)))


class H5ShardWriter:
    suffix = ".h5"

    def __init__(self, path: Path, fields: dict[str, FieldSpec], max_rows: int = MAX_CHUNK_ROWS):
        import h5py

        self.path = path
        self.fields = fields
        self._tmp = tmp_path(path)
        self._file = h5py.File(self._tmp, "w", libver="earliest", track_order=False)
        text = h5py.string_dtype("utf-8")
        text_rows = (min(256, max_rows),)
        self._file.create_dataset("keys", (0,), dtype=text, maxshape=(None,), chunks=text_rows)
        self._file.create_dataset("meta", (0,), dtype=text, maxshape=(None,), chunks=text_rows)
        for name, spec in fields.items():
            rows = rows_per_chunk(spec, max_rows)
            self._file.create_dataset(
                f"fields/{name}",
                (0, *spec.shape),
                dtype=spec.dtype,
                maxshape=(None, *spec.shape),
                chunks=(rows, *spec.shape),
            )
            if spec.has_scale:
                self._file.create_dataset(
                    f"scales/{name}",
                    (0, *spec.scale_shape),
                    dtype=np.float32,
                    maxshape=(None, *spec.scale_shape),
                    chunks=(rows, *spec.scale_shape),
                )
        self._pending: list[tuple[str, dict, bytes]] = []
        self._rows = 0
        self._bytes = 0

    @property
    def bytes_written(self) -> int:
        return self._bytes

    def add(self, key: str, encoded: dict, meta: bytes) -> list[int]:
        self._pending.append((key, encoded, meta))
        self._bytes += len(meta) + sum(
            v.nbytes + (0 if s is None else s.nbytes) for v, s in encoded.values()
        )
        row = self._rows + len(self._pending) - 1
        if len(self._pending) >= MAX_CHUNK_ROWS:
            self._flush()
        return [row]

    def _flush(self) -> None:
        if not self._pending:
            return
        start, stop = self._rows, self._rows + len(self._pending)
        self._append("keys", start, stop, [key for key, _, _ in self._pending])
        self._append("meta", start, stop, [meta.decode("utf-8") for _, _, meta in self._pending])
        for name, spec in self.fields.items():
            self._append(
                f"fields/{name}", start, stop, np.stack([e[name][0] for _, e, _ in self._pending])
            )
            if spec.has_scale:
                self._append(
                    f"scales/{name}",
                    start,
                    stop,
                    np.stack([e[name][1] for _, e, _ in self._pending]),
                )
        self._rows = stop
        self._pending = []

    def _append(self, name: str, start: int, stop: int, values) -> None:
        dataset = self._file[name]
        dataset.resize(stop, axis=0)
        dataset[start:stop] = values

    def close(self) -> None:
        self._flush()
        self._file.close()
        finish_atomic(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class H5ShardReader:
    """Reads rows of one HDF5 shard; the file is opened on first use (after a DataLoader fork)."""

    def __init__(self, path: Path, fields: dict[str, FieldSpec], index: dict):
        self.path = path
        self.fields = fields
        self.count = len(index["keys"])
        self._file = None

    def __len__(self) -> int:
        return self.count

    def _open(self):
        if self._file is None:
            import h5py

            self._file = h5py.File(self.path, "r")
            rows = self._file["keys"].shape[0]
            if rows != self.count:
                raise ValueError(
                    f"{self.path}: holds {rows} rows but its index lists {self.count}; "
                    "run python -m extract.verify and extract again"
                )
        return self._file

    def read(self, row: int, wanted: set[str] | None = None) -> tuple[dict, bytes]:
        handle = self._open()
        arrays = {}
        for name, spec in self.fields.items():
            if wanted is not None and name not in wanted:
                continue
            values = handle[f"fields/{name}"][row]
            scale = handle[f"scales/{name}"][row] if spec.has_scale else None
            arrays[name] = (np.asarray(values), None if scale is None else np.asarray(scale))
        meta = handle["meta"][row]
        return arrays, meta if isinstance(meta, bytes) else meta.encode("utf-8")

    def iterate(self, wanted: set[str] | None = None):
        """All rows in order, read a block at a time (much faster than row by row in h5py)."""
        handle = self._open()
        for start in range(0, self.count, MAX_CHUNK_ROWS):
            stop = min(self.count, start + MAX_CHUNK_ROWS)
            block = {}
            for name, spec in self.fields.items():
                if wanted is not None and name not in wanted:
                    continue
                values = handle[f"fields/{name}"][start:stop]
                scales = handle[f"scales/{name}"][start:stop] if spec.has_scale else None
                block[name] = (values, scales)
            metas = handle["meta"][start:stop]
            for offset, meta in enumerate(metas):
                arrays = {
                    name: (values[offset], None if scales is None else scales[offset])
                    for name, (values, scales) in block.items()
                }
                yield arrays, meta if isinstance(meta, bytes) else meta.encode("utf-8")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
