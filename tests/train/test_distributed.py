"""DDP training for real: torchrun with 2 processes on the CPU (gloo), against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch.utils.data import DataLoader

from extract.store.stream import StreamingDataset, equal_ranges
from tests.train.tiny_cache import build
from train.data import PooledBatches, RankBatches
from train.distributed import World, rank_part, split_evenly
from train.run import main as train_cli

ROOT = Path(__file__).resolve().parents[2]


def test_rank_parts_cover_a_global_batch_in_order():
    batch = list(range(7))
    parts = [rank_part(batch, World(rank, 2)) for rank in range(2)]
    assert parts == [[0, 1, 2, 3], [4, 5, 6]]
    assert [rank_part([9], World(rank, 3)) for rank in range(3)] == [[9], [9], [9]]
    assert [rank_part([4, 5], World(rank, 3)) for rank in range(3)] == [[4], [5], [4]]
    keys = [f"k{i}" for i in range(5)]
    shares = [split_evenly(keys, World(rank, 3)) for rank in range(3)]
    assert sum(shares, []) == keys and [len(s) for s in shares] == [2, 2, 1]
    assert split_evenly(["a"], World(1, 2)) == []


def test_rank_batches_are_the_one_process_batches_cut_in_two():
    """World size 2 with 8 per rank reads exactly the samples of each one-process batch of 16."""
    generator = torch.Generator().manual_seed(3 * 1000 + 1)
    loader = DataLoader(list(range(40)), batch_size=16, shuffle=True, generator=generator)
    alone = list(loader)  # what train_loader gives one process at seed 3, epoch 1
    ranks = [list(RankBatches(40, 16, 3, 1, World(rank, 2))) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(alone) == 3
    for number, batch in enumerate(alone):
        assert ranks[0][number] + ranks[1][number] == batch.tolist()


def test_pooled_batches_give_each_rank_its_part_of_both_halves():
    alone = list(PooledBatches(10, 30, 8, seed=2, epoch=0))
    ranks = [list(PooledBatches(10, 30, 8, 2, 0, World(rank, 2))) for rank in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(alone) == 2
    for number, batch in enumerate(alone):  # labelled half first, then as many pool samples
        half = len(batch) // 2
        first, second = ranks[0][number], ranks[1][number]
        labelled = first[: len(first) // 2] + second[: len(second) // 2]
        pool = first[len(first) // 2 :] + second[len(second) // 2 :]
        assert labelled == batch[:half] and pool == batch[half:]
        assert all(index < 10 for index in labelled) and all(index >= 10 for index in pool)


@pytest.mark.parametrize("slots", [2, 3, 5, 70])
def test_streaming_readers_get_equal_counts_and_every_sample(slots):
    counts, order = [16, 16, 16, 12], [2, 0, 3, 1]
    plans = [equal_ranges(counts, order, slot, slots) for slot in range(slots)]
    read = [[(shard, row) for shard, rows in plan for row in rows] for plan in plans]
    assert len({len(rows) for rows in read}) == 1  # the same count for every reader
    assert len(read[0]) == -(-60 // slots)
    every = {(shard, row) for shard in order for row in range(counts[shard])}
    assert set().union(*map(set, read)) == every
    if slots == 2:  # contiguous halves of the shuffled shard sequence, nothing repeated
        assert read[0][:16] == [(2, r) for r in range(16)] and read[1][-16:] == [
            (1, r) for r in range(16)
        ]
    assert StreamingDataset.batches_per_rank(counts, 8, 0, 2) == 4


def torchrun(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        *arguments,
    ]  # fmt: skip
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=600
    )


def options(cache: Path, out: Path, batch_size: int, *extra: str) -> list[str]:
    return [
        "--cache", str(cache), "--out", str(out), "--epochs", "3", "--batch-size",
        str(batch_size), "--train-count", "32", "--dropout", "0", "--distill", "mad",
        "--eval-split", "val,test", "--device", "cpu", *extra,
    ]  # fmt: skip


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "last.pt", weights_only=False)["model"]


def history(run: Path, kind: str) -> list[dict]:
    return [e for e in map(json.loads, (run / "metrics.jsonl").open()) if e["kind"] == kind]


@pytest.mark.slow
def test_two_ranks_reach_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    cache = build(tmp_path / "cache")
    alone, ddp = tmp_path / "alone", tmp_path / "ddp"
    result = CliRunner().invoke(train_cli, options(cache, alone, 16))
    assert result.exit_code == 0, result.output
    run = torchrun("-m", "train.run", *options(cache, ddp, 8))
    assert run.returncode == 0, run.stderr[-3000:]
    one, two = weights(alone), weights(ddp)
    assert one.keys() == two.keys()
    largest = max(float((one[name] - two[name]).abs().max()) for name in one)
    assert largest < 1e-4, largest  # float reduction order, amplified by Adam (lr 3e-4)
    first, second = (json.loads((r / "results.json").read_text()) for r in (alone, ddp))
    assert (first["world_size"], first["global_batch"]) == (1, 16)
    assert (second["world_size"], second["global_batch"]) == (2, 16)
    for split in ("val", "test"):  # test: hidden labels, predictions only
        assert second["splits"][split] == first["splits"][split]
    assert [s["step"] for s in history(ddp, "step")] == list(range(1, 7))  # 2 steps x 3 epochs
    for a, b in zip(history(alone, "step"), history(ddp, "step"), strict=True):
        assert b["lr"] == a["lr"]
    for a, b in zip(history(alone, "epoch"), history(ddp, "epoch"), strict=True):
        assert b["val"] == a["val"]  # validated on every sample
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4)  # the mean over both ranks
    for split, count in (("val", 30), ("test", 12)):  # every sample once, gathered in order
        rows = json.loads((ddp / "predictions" / f"{split}.json").read_text())
        expected = json.loads((alone / "predictions" / f"{split}.json").read_text())
        assert len(rows) == count and [r["key"] for r in rows] == [r["key"] for r in expected]


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_to_the_same_weights(tmp_path):
    cache = build(tmp_path / "cache")
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    extra = ("--dropout", "0.1")  # each rank's dropout state must resume too
    run = torchrun("-m", "train.run", *options(cache, whole, 8), *extra)
    assert run.returncode == 0, run.stderr[-3000:]
    helper = str(Path(__file__).with_name("ddp_interrupted.py"))
    stopped = torchrun(helper, *options(cache, cut, 8), *extra, env={"STOP_AFTER": "1"})
    assert stopped.returncode != 0 and (cut / "last.pt").is_file()
    assert torch.load(cut / "last.pt", weights_only=False)["state"]["epoch"] == 1
    resumed = torchrun("-m", "train.run", *options(cache, cut, 8), *extra, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    one, two = weights(whole), weights(cut)
    assert all(torch.equal(one[name], two[name]) for name in one)
    assert history(cut, "epoch") == history(whole, "epoch")


@pytest.mark.slow
def test_streaming_a_whole_split_gives_every_rank_as_many_batches(tmp_path):
    """60 samples in shards of 16, 16, 16, 12: whole shards dealt to 2 ranks would give 32 and
    28 samples (4 and 4 batches of 8, but 2 workers' partial batches differ); equal ranges give
    each rank 30, so both step together to the end of every epoch."""
    cache = build(tmp_path / "cache")
    out = tmp_path / "stream"
    arguments = options(cache, out, 8)
    arguments[arguments.index("--train-count") : arguments.index("--train-count") + 2] = []
    run = torchrun("-m", "train.run", *arguments, "--workers", "2")
    assert run.returncode == 0, run.stderr[-3000:]
    expected = StreamingDataset.batches_per_rank([16, 16, 16, 12], 8, 2, 2)
    assert expected == 4  # 2 workers x ceil(15 / 8)
    assert [s["step"] for s in history(out, "step")] == list(range(1, 3 * expected + 1))
