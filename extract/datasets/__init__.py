"""Dataset adapters: read benchmark files exactly as released and yield :class:`Record` objects.

``open_dataset("vcr", "/data/vcr1")`` looks the name up in :data:`ADAPTERS` and constructs the
adapter with its options (e.g. ``open_dataset("vqa", root, min_answer_count=9)``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import DatasetAdapter, Record
from .pairs import PairsAdapter
from .snli_ve import SnliVeAdapter
from .vcr import VcrAdapter
from .vqa import VqaAdapter

ADAPTERS: dict[str, type] = {
    adapter.name: adapter for adapter in (VcrAdapter, SnliVeAdapter, VqaAdapter, PairsAdapter)
}


def open_dataset(name: str, root: str | Path, **options: Any) -> DatasetAdapter:
    """The adapter registered as ``name``, reading the dataset under ``root``."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(ADAPTERS))}")
    return ADAPTERS[name](root, **options)


__all__ = [
    "ADAPTERS",
    "DatasetAdapter",
    "PairsAdapter",
    "Record",
    "SnliVeAdapter",
    "VcrAdapter",
    "VqaAdapter",
    "open_dataset",
]
