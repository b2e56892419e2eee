"""An interrupted write resumes at the first missing shard and ends byte-identical."""

import re

import numpy as np
import pytest

from extract.store import CacheBuilder, CacheReader
from tests.conftest import make_sample, make_spec

NUM_INPUTS = 11
CORRUPT = {2, 9}  # input positions that are "unreadable" and get skipped


def write_inputs(builder: CacheBuilder, stop: int | None = None) -> int:
    """Feed inputs 0..NUM_INPUTS-1 the way an extractor does; returns how many were decoded."""
    split = builder.split("train")
    decoded = 0
    for position in range(split.resume_position, NUM_INPUTS):
        if stop is not None and position == stop:
            return decoded  # simulated kill: the open shard is never finished
        decoded += 1
        if position in CORRUPT:
            split.skip(f"in-{position}", "cannot identify image file")
        else:
            split.write(f"in-{position}", make_sample(position), {"label": position % 3})
    split.close()
    return decoded


def all_bytes(out):
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


def test_resume_is_byte_identical(tmp_path, fmt):
    spec = make_spec(fmt, max_count=3)
    whole = CacheBuilder(tmp_path / "whole", spec)
    write_inputs(whole)
    whole.finish()

    first = CacheBuilder(tmp_path / "cut", spec)
    write_inputs(first, stop=7)  # shards 0 (inputs 0-3, 2 skipped) and 1 (4-6) are finished
    assert not (tmp_path / "cut" / "manifest.json").exists()
    second = CacheBuilder(tmp_path / "cut", spec)
    assert not second.complete
    decoded = write_inputs(second)
    assert decoded == NUM_INPUTS - 7  # finished shards were not decoded again
    second.finish()

    assert all_bytes(tmp_path / "cut") == all_bytes(tmp_path / "whole")
    manifest = CacheReader(tmp_path / "cut").manifest
    record = manifest.splits["train"]
    assert record.num_samples == NUM_INPUTS - len(CORRUPT)
    assert [s["key"] for s in record.skipped] == ["in-2", "in-9"]
    assert record.skipped[0]["reason"] == "cannot identify image file"


def test_trailing_skips_are_recorded(tmp_path):
    builder = CacheBuilder(tmp_path / "c", make_spec(max_count=2))
    with builder.split("train") as split:
        split.write("a", make_sample(0))
        split.write("b", make_sample(1))
        split.skip("c", "broken")
    manifest = builder.finish()
    assert [s.count for s in manifest.splits["train"].shards] == [2, 0]
    assert manifest.splits["train"].skipped == [{"key": "c", "position": 2, "reason": "broken"}]
    split = CacheReader(tmp_path / "c").split("train")
    assert [s["__key__"] for s in split] == ["a", "b"]


def test_byte_limit_closes_shards(tmp_path):
    spec = make_spec(max_count=100)
    spec.limits = type(spec.limits)(max_count=100, max_bytes=6000)
    builder = CacheBuilder(tmp_path / "c", spec)
    with builder.split("train") as split:
        for i in range(9):
            split.write(f"k{i}", make_sample(i))
    manifest = builder.finish()
    shards = manifest.splits["train"].shards
    assert len(shards) > 1 and sum(s.count for s in shards) == 9
    assert all(s.file.bytes <= 6000 + 10240 for s in shards)  # tar end blocks come after the check
    keys = [s["__key__"] for s in CacheReader(tmp_path / "c").split("train")]
    assert keys == [f"k{i}" for i in range(9)]


def test_duplicate_key_is_refused(tmp_path):
    builder = CacheBuilder(tmp_path / "c", make_spec())
    split = builder.split("train")
    split.write("same", make_sample(0))
    with pytest.raises(ValueError, match="sample key 'same' occurs twice"):
        split.write("same", make_sample(1))


def test_missing_field_is_named(tmp_path):
    builder = CacheBuilder(tmp_path / "c", make_spec())
    arrays = make_sample(0)
    del arrays["pixels"]
    arrays["extra"] = np.zeros(1)
    with pytest.raises(
        ValueError, match=re.escape("missing fields ['pixels'], undeclared fields ['extra']")
    ):
        builder.split("train").write("k", arrays)
