"""The feature cache: the contract between extraction (stage 1) and training (stage 2).

Light to import (numpy and the standard library; h5py and torch only where used), so the trainer
can depend on it without pulling in any teacher.
"""

from .fields import FieldSpec, decode, encode
from .manifest import (
    FORMAT_VERSION,
    CacheSpec,
    FileRecord,
    GroupSpec,
    Manifest,
    ShardLimits,
    describe_differences,
    load_manifest,
)
from .reader import CacheReader, SplitReader
from .verify import (
    VerifyReport,
    check_files,
    check_sizes,
    files_read,
    format_report,
    verify_cache,
)
from .writer import CacheBuilder, ShardPlan, SplitWriter

__all__ = [
    "FORMAT_VERSION",
    "CacheBuilder",
    "CacheReader",
    "CacheSpec",
    "FieldSpec",
    "FileRecord",
    "GroupSpec",
    "Manifest",
    "ShardLimits",
    "ShardPlan",
    "SplitReader",
    "SplitWriter",
    "StreamingDataset",
    "VerifyReport",
    "check_files",
    "check_sizes",
    "decode",
    "describe_differences",
    "encode",
    "files_read",
    "format_report",
    "load_manifest",
    "verify_cache",
]


def __getattr__(name: str):
    # The streaming dataset needs torch; import it only when asked for.
    if name == "StreamingDataset":
        from .stream import StreamingDataset

        return StreamingDataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
