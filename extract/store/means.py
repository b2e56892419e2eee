"""Training-split means of the teacher fields, stored beside the manifest for centring targets.

Pooled CNN features of simple images are nearly parallel (mean pairwise cosine about 0.8), so
``1 - cosine`` against raw targets is trivial; the trainer subtracts these means first. Each mean
is over the stored (decoded) values: float64 sums per shard, in sample order, saved beside the
shard before it counts as finished, then added up in shard order. So the means do not depend on
which process wrote which shard, nor on where an interrupted extraction resumed.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .atomic import write_bytes_atomic

# field -> (axes of one sample that are averaged over, the field that counts the valid rows)
MEAN_FIELDS = {
    "img_emb": None,
    "img_grid": None,
    "txt_emb": None,
    "txt_tok": "token_len",
    "student_grid": None,
    "regions": "region_count",
    "student_regions": "region_count",
}


class FieldMeans:
    """Running means of the last axis of the teacher fields over samples (and cells / tokens)."""

    def __init__(self, fields: list[str]):
        self.names = [name for name in MEAN_FIELDS if name in fields]
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = dict.fromkeys(self.names, 0)

    def add(self, sample: dict[str, np.ndarray]) -> None:
        for name in self.names:
            rows = self._valid_rows(name, sample)
            total = rows.sum(axis=0, dtype=np.float64)
            self.sums[name] = self.sums.get(name, 0) + total
            self.counts[name] += rows.shape[0]

    @staticmethod
    def _valid_rows(name: str, sample: dict[str, np.ndarray]) -> np.ndarray:
        values = np.asarray(sample[name])  # summed in float64 by add(), without a float64 copy
        counter = MEAN_FIELDS[name]
        if counter == "token_len":  # [C, L, D]: only real tokens of each candidate
            lengths = np.asarray(sample["token_len"]).reshape(-1).astype(int)
            return np.concatenate([values[c, : lengths[c]] for c in range(values.shape[0])])
        if counter == "region_count":  # [R, D]: only real regions
            return values[: int(np.asarray(sample["region_count"]).reshape(-1)[0])]
        return values.reshape(-1, values.shape[-1])

    def result(self) -> dict[str, np.ndarray]:
        return {
            name: (self.sums[name] / max(self.counts[name], 1)).astype(np.float32)
            for name in self.names
            if name in self.sums
        }

    def merge(self, other: FieldMeans) -> None:
        """Add another set of sums (another shard's) to these."""
        for name in self.names:
            if name in other.sums:
                self.sums[name] = self.sums.get(name, 0) + other.sums[name]
                self.counts[name] += other.counts[name]

    def save(self, path: Path) -> None:
        arrays = {f"sum_{name}": value for name, value in self.sums.items()}
        arrays.update({f"count_{name}": np.int64(count) for name, count in self.counts.items()})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_bytes_atomic(path, buffer.getvalue())

    @classmethod
    def load(cls, names: list[str], path: Path) -> FieldMeans:
        means = cls(names)
        with np.load(path) as data:
            for name in means.names:
                if f"sum_{name}" in data:
                    means.sums[name] = data[f"sum_{name}"]
                means.counts[name] = int(data[f"count_{name}"])
        return means
