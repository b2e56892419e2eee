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


def write_planned(builder: CacheBuilder, size: int, numbers, inputs) -> None:
    from extract.store import ShardPlan

    split = builder.split("train", ShardPlan(size, NUM_INPUTS), inputs=inputs)
    for number in numbers:
        split.begin(number)
        for position in range(*split.plan.bounds(number)):
            if position in CORRUPT:
                split.skip(inputs[position], "cannot identify image file", position)
            else:
                split.write(inputs[position], make_sample(position), {}, position)
        split.end()


def test_planned_shards_are_written_in_any_order_and_checked_against_their_range(tmp_path):
    from extract.store import ShardPlan

    spec, inputs = make_spec(max_count=3), [f"in-{p}" for p in range(NUM_INPUTS)]
    write_planned(CacheBuilder(tmp_path / "c", spec), 3, [3, 1], inputs)  # 4 shards, 2 written
    again = CacheBuilder(tmp_path / "c", spec).split(
        "train", ShardPlan(3, NUM_INPUTS), inputs=inputs
    )
    assert again.missing() == [0, 2]
    assert sorted(p.name for p in (tmp_path / "c" / "train").glob("*.idx.json")) == [
        "train-000001.idx.json",
        "train-000003.idx.json",
    ]
    # shards on disk that hold other inputs than their planned range are written again
    other = CacheBuilder(tmp_path / "c", spec).split(
        "train", ShardPlan(4, NUM_INPUTS), inputs=inputs
    )
    assert other.missing() == [0, 1, 2]
    assert not list((tmp_path / "c" / "train").glob("*"))  # and their files removed


def test_planned_shards_in_any_order_give_the_bytes_of_the_plain_order(tmp_path):
    spec, inputs = make_spec(max_count=3), [f"in-{p}" for p in range(NUM_INPUTS)]
    for name, order in (("ordered", [0, 1, 2, 3]), ("shuffled", [2, 0, 3, 1])):
        builder = CacheBuilder(tmp_path / name, spec)
        write_planned(builder, 3, order, inputs)
        builder.splits.clear()
        reopened = CacheBuilder(tmp_path / name, spec)
        write_planned(reopened, 3, [], inputs)
        manifest = reopened.finish()
        assert [s.count for s in manifest.splits["train"].shards] == [2, 3, 3, 1]  # 2, 9 skipped
    assert all_bytes(tmp_path / "ordered") == all_bytes(tmp_path / "shuffled")
    assert [s["__key__"] for s in CacheReader(tmp_path / "shuffled").split("train")] == [
        key for p, key in enumerate(inputs) if p not in CORRUPT
    ]


def test_shards_written_without_a_plan_or_without_their_sums_are_written_again(tmp_path):
    from extract.store import ShardPlan

    spec, inputs = make_spec(max_count=3), [f"in-{p}" for p in range(NUM_INPUTS)]
    write_inputs(CacheBuilder(tmp_path / "old", spec), stop=7)  # sequential: 2 shards finished
    plan = ShardPlan(3, NUM_INPUTS)
    again = CacheBuilder(tmp_path / "old", spec).split("train", plan, inputs=inputs)
    assert again.missing() == [0, 1, 2, 3]  # the same keys, but not written to a plan

    write_planned(CacheBuilder(tmp_path / "new", spec), 3, [0, 1], inputs)
    (tmp_path / "new" / "train" / "train-000000.means.npz").write_bytes(b"sums")
    reopened = CacheBuilder(tmp_path / "new", spec).split(
        "train", plan, inputs=inputs, beside=".means.npz"
    )
    assert reopened.missing() == [1, 2, 3]  # shard 1 lacks its sums
    (tmp_path / "new" / "train" / "notes.txt").write_text("mine")
    CacheBuilder(tmp_path / "new", spec).split("train", plan, inputs=inputs, beside=".means.npz")
    assert (tmp_path / "new" / "train" / "notes.txt").is_file()  # not a shard file: kept
