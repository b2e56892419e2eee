"""Streaming: every sample once across DataLoader workers; across distributed ranks every sample
at least once and every reader as many (a few repeated), so DDP ranks step together."""

from collections import Counter

import numpy as np
import pytest
from torch.utils.data import DataLoader

from extract.store import StreamingDataset
from extract.store.stream import assign
from tests.conftest import build_cache


def keep_as_list(batch):
    return batch


def stream_keys(out, world_size, workers, **options) -> list[list[str]]:
    """Keys seen by each rank, reading through a DataLoader with ``workers`` processes."""
    per_rank = []
    for rank in range(world_size):
        dataset = StreamingDataset(out, "train", rank=rank, world_size=world_size, **options)
        loader = DataLoader(dataset, batch_size=3, num_workers=workers, collate_fn=keep_as_list)
        per_rank.append([sample["__key__"] for batch in loader for sample in batch])
    return per_rank


@pytest.mark.parametrize("fmt", ["wds", "hdf5"])
@pytest.mark.parametrize(
    "num_samples,shard_size", [(23, 2), (23, 10)], ids=["many-shards", "few-shards"]
)
def test_two_workers_two_ranks_read_equal_shares(tmp_path, fmt, num_samples, shard_size):
    out = tmp_path / "c"
    written = build_cache(out, fmt, splits={"train": num_samples}, max_count=shard_size)
    per_rank = stream_keys(out, world_size=2, workers=2, shuffle=True, buffer_size=4, seed=3)
    counts = Counter(key for keys in per_rank for key in keys)
    assert set(counts) == set(written["train"])  # every sample
    assert [len(keys) for keys in per_rank] == [12, 12]  # 4 readers x ceil(23 / 4)
    assert sum(counts.values()) - num_samples == 1  # one reader of 5 repeats a sample once


def test_one_process_with_two_workers_reads_every_sample_once(tmp_path):
    out = tmp_path / "c"
    written = build_cache(out, splits={"train": 23}, max_count=2)
    (keys,) = stream_keys(out, world_size=1, workers=2, shuffle=True, buffer_size=4, seed=3)
    assert sorted(keys) == sorted(written["train"])


def test_decoding_is_float32_and_matches(tmp_path):
    out = tmp_path / "c"
    written = build_cache(out, splits={"train": 5})
    samples = list(StreamingDataset(out, "train", fields=["img_raw", "pixels"]))
    assert [s["__key__"] for s in samples] == list(written["train"])
    for sample in samples:
        assert sample["pixels"].dtype == np.float32
        assert np.array_equal(sample["img_raw"], written["train"][sample["__key__"]]["img_raw"])


def test_shuffle_is_seeded_and_changes_with_epoch(tmp_path):
    out = tmp_path / "c"
    build_cache(out, splits={"train": 20}, max_count=3)

    def order(seed, epoch):
        dataset = StreamingDataset(out, "train", fields=[], shuffle=True, buffer_size=5, seed=seed)
        dataset.set_epoch(epoch)
        return [s["__key__"] for s in dataset]

    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)
    assert sorted(order(0, 1)) == sorted(order(1, 0))


def test_assign_deals_shards_or_samples():
    assert assign(5, [0, 1, 2, 3, 4], slot=1, slots=2) == [(1, 1, 0), (3, 1, 0)]
    assert assign(2, [1, 0], slot=3, slots=4) == [(1, 4, 3), (0, 4, 3)]
