"""Rank-parallel extraction for real: torchrun with 2 processes on the CPU (gloo) writes the same
cache as one process, and a job killed midway resumes at the missing shards at any world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from extract.datasets.synthetic import GeneratorConfig, generate
from extract.store import CacheReader, verify_cache

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def extraction(data: Path, out: Path) -> list[str]:
    return [
        "--dataset", "vqa", "--root", str(data / "vqa"), "--out", str(out),
        "--student-input", "pixels:16@64", "--max-text-length", "16", "--batch-size", "4",
        "--shard-samples", "6", "--workers", "0", "--device", "cpu",
        "--dataset-option", "min_answer_count=1",
    ]  # fmt: skip


def launch(ranks: int, *arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}  # the same threads
    runner = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    command = [sys.executable, *(runner if ranks > 1 else []), *arguments]
    return subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900
    )


def files(cache: Path) -> dict[str, bytes]:
    """Every file of a cache but the manifest (whose timings differ), by relative path."""
    return {
        p.relative_to(cache).as_posix(): p.read_bytes()
        for p in sorted(cache.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data")
    generate(GeneratorConfig(train=10, val=4, test=3, test_shifted=3), folder)
    return folder


@pytest.fixture(scope="module")
def one_process(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "cache"
    result = launch(1, "-m", "extract.run", *extraction(data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_ranks_write_the_cache_of_one_process_byte_for_byte(data, one_process, tmp_path):
    out = tmp_path / "two"
    result = launch(2, "-m", "extract.run", *extraction(data, out))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("key ") == 1  # rank 0 alone prints the summary
    one, two = files(one_process), files(out)
    assert one.keys() == two.keys()
    assert [name for name in one if one[name] != two[name]] == []
    first, second = (json.loads((c / "manifest.json").read_text()) for c in (one_process, out))
    assert second["cache_key"] == first["cache_key"] and second["splits"] == first["splits"]
    assert second["runtime"]["world_size"] == 2 and first["runtime"]["world_size"] == 1
    assert len(second["timing"]["ranks"]) == 2
    assert len(first["splits"]["train"]["shards"]) == 4  # 20 questions in shards of 6
    assert verify_cache(out).ok
    assert not list(out.rglob("*.means.npz"))  # the per-shard sums are gone once done


def test_a_job_killed_midway_resumes_at_any_world_size(data, one_process, tmp_path):
    out = tmp_path / "cut"
    helper = str(Path(__file__).with_name("rank_dies.py"))
    died = launch(2, helper, *extraction(data, out), env={"DIE_RANK": "1"})
    assert died.returncode != 0 and not (out / "manifest.json").exists()
    finished = sorted(p.name for p in out.rglob("*.idx.json"))
    assert finished  # rank 1's first shard at least
    resumed = launch(1, "-m", "extract.run", *extraction(data, out))  # now one process
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert files(out) == files(one_process)
    manifest = json.loads((out / "manifest.json").read_text())
    written = sum(split["samples"] for split in manifest["timing"]["splits"].values())
    total = sum(len(CacheReader(out).split(s)) for s in CacheReader(out).splits)
    assert written < total  # the finished shards were not written again


def test_the_means_are_the_means_of_the_stored_values(one_process):
    cache = CacheReader(one_process, as_float32=True)
    values = np.stack([s["img_emb"] for s in cache.split("train", fields=["img_emb"])])
    stored = cache.shared("mean_img_emb")
    np.testing.assert_allclose(stored, values.astype(np.float64).mean(0), rtol=1e-6, atol=1e-7)


def test_two_ranks_add_the_group_one_process_adds(data, one_process, tmp_path):
    import shutil

    adding = ["--add-teachers", "effnet-lite0:random,minilm:random"]
    one, two = tmp_path / "one", tmp_path / "two"
    for out in (one, two):
        shutil.copytree(one_process, out)
    alone = launch(1, "-m", "extract.run", *extraction(data, one), *adding)
    assert alone.returncode == 0, alone.stderr[-3000:]
    ranks = launch(2, "-m", "extract.run", *extraction(data, two), *adding)
    assert ranks.returncode == 0, ranks.stderr[-3000:]
    assert files(one) == files(two) and verify_cache(two).ok
    assert list(CacheReader(two).manifest.groups)[1] == "effnet-lite0-random-minilm-random"
