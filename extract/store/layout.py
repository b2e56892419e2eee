"""Where things live inside a cache directory."""

from __future__ import annotations

from pathlib import Path

from .h5_shard import H5ShardReader, H5ShardWriter
from .tar_shard import TarShardReader, TarShardWriter

WRITERS = {"wds": TarShardWriter, "hdf5": H5ShardWriter}
READERS = {"wds": TarShardReader, "hdf5": H5ShardReader}
SHARED_DIR = "shared"
GROUPS_DIR = "groups"
PENDING_SPEC = "extraction-in-progress.json"


def shard_stem(split: str, number: int) -> str:
    return f"{split}/{split}-{number:06d}"


def shard_path(cache_dir: Path, split: str, number: int, fmt: str) -> Path:
    return cache_dir / (shard_stem(split, number) + WRITERS[fmt].suffix)


def index_path(cache_dir: Path, split: str, number: int) -> Path:
    return cache_dir / (shard_stem(split, number) + ".idx.json")


def relative(cache_dir: Path, path: Path) -> str:
    return path.relative_to(cache_dir).as_posix()


def group_dir(cache_dir: Path, name: str) -> Path:
    """A column group's folder: laid out like the cache itself (splits, shared/, indices/)."""
    return cache_dir / GROUPS_DIR / name
