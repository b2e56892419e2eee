"""Helpers shared by the adapters: reading annotation files with precise error messages."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from extract.store.atomic import json_error
from extract.store.atomic import read_json as read_json_file

from .base import Record

DOWNLOAD_AGAIN = "the file is incomplete or damaged: download it again"


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


def check_split(
    split: str, known: list[str], dataset: str, root: Path, expected: str | None = None
) -> None:
    """ValueError for a split that is not there; ``expected``: the file that would give it."""
    if split not in known:
        missing = f" (no {expected} there)" if expected else ""
        raise ValueError(
            f"split {split!r} of {dataset} is not present under {root}{missing}; present: {known}"
        )


def read_jsonl(path: Path, fix: str = DOWNLOAD_AGAIN) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) per non-blank line, in file order; a line that does not
    parse is a ValueError naming the file, the line and ``fix`` (what to do about it)."""
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")  # columns count on this line only
                if not text.strip():
                    continue
                obj = json.loads(text)
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise json_error(path, err, fix=fix, line=number) from None
            if not isinstance(obj, dict):
                raise ValueError(
                    f"{where(path, number)}: expected a JSON object per line, got "
                    f"{type(obj).__name__}; is this the released annotation file?"
                )
            yield number, obj


def read_json(path: Path, fix: str = DOWNLOAD_AGAIN) -> Any:
    """A whole annotation file; one that does not parse is a ValueError naming it and ``fix``."""
    return read_json_file(path, fix)


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
