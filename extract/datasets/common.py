"""Helpers shared by the adapters: reading annotation files with precise error messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .base import Record


def where(path: Path, line: int) -> str:
    """``file:line`` for error messages (line is 1-based)."""
    return f"{path}:{line}"


def check_root(root: str | Path, dataset: str, hint: str) -> Path:
    """The dataset root as a Path; FileNotFoundError saying what to download when it is missing."""
    path = Path(root)
    if not path.is_dir():
        raise FileNotFoundError(f"{dataset} root {path} is not a directory. {hint}")
    return path


def check_options(options: dict[str, Any], allowed: Iterable[str], dataset: str) -> None:
    """Reject misspelled options instead of ignoring them."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"unknown option(s) {unknown} for dataset {dataset!r}; known: {known}")


def check_split(split: str, known: list[str], dataset: str, root: Path) -> None:
    if split not in known:
        raise ValueError(
            f"split {split!r} of {dataset} is not present under {root}; present: {known}"
        )


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) per non-blank line, in file order."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{where(path, number)}: not valid JSON ({err.msg}); the file is truncated "
                    "or corrupted, download it again"
                ) from None
            if not isinstance(obj, dict):
                raise ValueError(
                    f"{where(path, number)}: expected a JSON object per line, got "
                    f"{type(obj).__name__}; is this the released annotation file?"
                )
            yield number, obj


def read_json(path: Path) -> Any:
    """A whole JSON file, with the file named in the error."""
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}); the file is truncated or "
            "corrupted, download it again"
        ) from None


def get_field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], at: str) -> Any:
    """A required field of the given type; ValueError naming the place and the field."""
    if not isinstance(obj, dict):
        raise ValueError(f"{at}: expected a JSON object holding {name!r}, got {obj!r:.80}")
    if name not in obj:
        raise ValueError(
            f"{at}: missing required field {name!r}; the record is not in the released format "
            "(download the annotations again, or fix the line)"
        )
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        expected = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ValueError(
            f"{at}: field {name!r} should be {expected}, got {value!r:.80}; fix the line or "
            "download the annotations again"
        )
    return value


def split_files(root: Path, pattern: str, known: Iterable[str]) -> list[str]:
    """Split names of the files matching ``pattern`` (one ``*``): known splits in their order,
    then any other split alphabetically (e.g. the synthetic ``test_shifted``)."""
    prefix, suffix = pattern.split("*")
    names = {
        path.name[len(prefix) : len(path.name) - len(suffix)]
        for path in root.glob(pattern)
        if path.is_file()
    }
    names.discard("")
    known = list(known)
    return [s for s in known if s in names] + sorted(names - set(known))


# Optional per-record fields kept in ``Record.meta`` when present: the synthetic datasets write
# them so that results can be broken down by question type and by kind of domain shift.
TYPE_FIELDS = ("question_type", "shift")


def optional_fields(obj: dict[str, Any], names: Iterable[str], at: str) -> dict[str, Any]:
    """The fields of ``names`` that ``obj`` has (strings), for the record's metadata."""
    return {name: get_field(obj, name, str, at) for name in names if name in obj}


class KeyTracker:
    """Fails on a repeated sample key (keys address samples in the cache)."""

    def __init__(self) -> None:
        self._seen: dict[str, str] = {}

    def add(self, key: str, at: str) -> None:
        if key in self._seen:
            raise ValueError(
                f"{at}: sample key {key!r} repeats the one at {self._seen[key]}; keys must be "
                "unique within a split (remove the duplicate)"
            )
        self._seen[key] = at


class FileImages:
    """``read_image_bytes`` for datasets whose images are plain files under the root."""

    root: Path
    image_hint: str = ""

    def read_image_bytes(self, record: Record) -> bytes:
        path = self.root / record.image
        if not path.is_file():
            raise FileNotFoundError(
                f"image {path} of sample {record.key!r} not found. {self.image_hint}"
            )
        return path.read_bytes()
