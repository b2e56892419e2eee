"""Atomic writes and content hashes: nothing half-written is ever visible under its real name."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def tmp_path(path: Path) -> Path:
    return path.with_name(path.name + ".tmp")


def finish_atomic(tmp: Path, path: Path) -> None:
    """fsync a finished temporary file and move it onto its final name."""
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        finish_atomic(tmp, path)
    except BaseException:  # a full disk, an interrupt: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, value: Any, indent: int | None = 1) -> None:
    text = json.dumps(value, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def json_error(
    path: str | Path, error: ValueError, fix: str, line: int | None = None
) -> ValueError:
    """The one message for JSON that does not parse (a ``JSONDecodeError``, or a
    ``UnicodeDecodeError`` for bytes that are not UTF-8): the file, where parsing stopped, and
    ``fix``, what to do. ``line``: the 1-based line of a JSONL file that ``error`` is about."""
    if isinstance(error, UnicodeDecodeError):  # line and column of the first bad byte
        data, start = error.object, error.start
        number, column = data.count(b"\n", 0, start) + 1, start - data.rfind(b"\n", 0, start)
        reason = f"not UTF-8 text: {error.reason}"
    else:
        number, column = error.lineno, error.colno
        reason = error.msg.removesuffix(" at")  # "Unterminated string starting at": the column
    number = number if line is None else line
    return ValueError(
        f"{path}: truncated or not valid JSON at line {number} column {column} ({reason}); {fix}"
    )


def read_json(
    path: str | Path, fix: str = "the file is damaged: delete the cache directory and extract again"
) -> Any:
    """A whole JSON file; a file that does not parse is a ValueError naming it and ``fix``."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise json_error(path, error, fix=fix) from error
