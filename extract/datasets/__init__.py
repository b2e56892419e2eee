"""Dataset adapters: read benchmark files exactly as released and yield :class:`Record` objects.

``open_dataset("vcr", "/data/vcr1")`` looks the name up in :data:`ADAPTERS` and constructs the
adapter with its options (e.g. ``open_dataset("vqa", root, min_answer_count=9)``).
``open_dataset("synthetic", root, task="vcr")`` is the real adapter of that task over
``root/<task>``, the output of ``python -m extract.synthetic --out root``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import DatasetAdapter, Record
from .pairs import PairsAdapter
from .snli_ve import SnliVeAdapter
from .vcr import VcrAdapter
from .vqa import VqaAdapter

SYNTHETIC_TASKS: dict[str, type] = {"vqa": VqaAdapter, "snli_ve": SnliVeAdapter, "vcr": VcrAdapter}


def open_synthetic(root: str | Path, task: str = "vqa", **options: Any) -> DatasetAdapter:
    """The ``task`` adapter over the generator's ``root/<task>`` (the real formats)."""
    if task not in SYNTHETIC_TASKS:
        raise ValueError(
            f"synthetic task {task!r} is not one of {sorted(SYNTHETIC_TASKS)}; pass e.g. "
            "task='vqa' (--dataset-option task=vqa)"
        )
    folder = Path(root) / task
    if not folder.is_dir():
        raise FileNotFoundError(
            f"no synthetic {task} dataset at {folder}; generate it with "
            f"`python -m extract.synthetic --out {root}`"
        )
    return SYNTHETIC_TASKS[task](folder, **options)


ADAPTERS: dict[str, Callable[..., DatasetAdapter]] = {
    adapter.name: adapter for adapter in (VcrAdapter, SnliVeAdapter, VqaAdapter, PairsAdapter)
}
ADAPTERS["synthetic"] = open_synthetic


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
    "open_synthetic",
]
