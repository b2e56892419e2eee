"""What every dataset adapter gives the extraction loop.

An adapter reads a dataset exactly as users download it and yields :class:`Record` objects in a
deterministic order. Every record of an adapter has the same number of candidate texts, so that
the cached text fields have one fixed shape (``[num_texts, ...]``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass
class Record:
    """One sample: an image, its candidate texts, labels and references.

    ``image`` is relative to the adapter's root. ``texts`` are the sequences the text teacher
    encodes and the student reads (VCR: 4 question+answer candidates then 4
    question+answer+rationale candidates; SNLI-VE: the hypothesis; VQA: the question).
    ``meta`` is JSON-serialisable: labels, raw texts, object references, question types.
    ``boxes`` are ``[x1, y1, x2, y2]`` in original pixels, when the dataset gives boxes.
    """

    key: str
    image: str
    texts: list[str]
    meta: dict[str, Any] = field(default_factory=dict)
    boxes: list[list[float]] | None = None


class DatasetAdapter(Protocol):
    name: str
    root: Path
    num_texts: int

    def splits(self) -> list[str]:
        """Splits whose files are present under the root."""

    def input_files(self, split: str) -> list[Path]:
        """Annotation files of a split (fingerprinted into the cache key)."""

    def records(self, split: str) -> Iterator[Record]:
        """The split's samples in a deterministic order."""

    def task(self) -> dict[str, Any]:
        """Task metadata stored in the manifest (kind, label names, answer vocabulary, ...)."""
