"""Each benchmark script end to end on small sizes, into a temporary work folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run_script(tmp_path, module: str, *args: str) -> dict:
    env = {
        **os.environ,
        "BENCH_WORK": str(tmp_path / "work"),
        "BENCH_RESULTS": str(tmp_path / "results.json"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((tmp_path / "results.json").read_text())


@pytest.mark.slow
def test_extraction_script(tmp_path):
    args = ["--samples", "32", "--repeats", "2", "--device", "cpu"]
    results = run_script(tmp_path, "extraction", *args)
    efficiency, scaling = results["extract_efficiency"], results["extract_scaling"]
    details = efficiency["details"]
    assert 0 < efficiency["value"] < 2 and details["extraction"]["samples"] == 32
    # the fastest of two interleaved extractions against the fastest of three forward timings
    assert len(details["extraction_s"]) == 2 and len(details["forward_only_s"]) == 3
    assert details["extraction"]["seconds"] == min(details["extraction_s"])
    forward_rate = 32 / min(details["forward_only_s"])  # from seconds rounded to 1 ms
    assert details["forward_only_samples_per_s"] == pytest.approx(forward_rate, rel=0.01)
    other = efficiency["details"]["extraction_in_the_other_loop_mode"]
    assert other["overlapped"] != efficiency["details"]["extraction"]["overlapped"]
    assert scaling["details"]["1x"]["samples"] == 8 and scaling["value"] > 0


@pytest.mark.slow
def test_training_script(tmp_path):
    args = ["--samples", "64", "--steps", "2", "--online-steps", "1", "--skip-vit"]
    results = run_script(tmp_path, "training", *args, "--device", "cpu")
    speedup, headroom = results["cache_speedup"]["details"], results["loader_headroom"]["details"]
    assert speedup["cached_samples_per_s"] > speedup["online_samples_per_s"] > 0
    assert headroom["step_samples_per_s"] > 0 and headroom["keyed_loader_samples_per_s"] > 0


@pytest.mark.slow
def test_students_script(tmp_path):
    results = run_script(tmp_path, "students", "--samples", "64", "--steps", "1", "--device", "cpu")
    entry = results["student_train_samples_per_s"]
    details = entry["details"]
    assert entry["target"] == "reported" and entry["met"] is None
    assert entry["value"] == details["samples_per_s"]["visualbert-init:minilm"] > 0
    assert details["parameters"]["visualbert-init:minilm"] > 22_000_000  # MiniLM's 22.7M + visual


def test_reader_memory_script(tmp_path):
    results = run_script(tmp_path, "reader_memory", "--samples", "20")
    details = results["reader_memory_growth"]["details"]
    assert details["streamed"]["1x"]["samples"] == 20
    assert details["keyed"]["10x"]["samples"] == 200
    assert details["bytes_10x"] > 9 * details["bytes_1x"]


@pytest.mark.slow
def test_faiss_script(tmp_path):
    results = run_script(tmp_path, "faiss_index", "--sizes", "2e3,6e4", "--device", "cpu")
    recall, build = results["faiss_recall_at_10"], results["faiss_build_s_per_1e5"]
    assert set(recall["value"]) == {"2000", "60000"} == set(build["value"])
    sizes = recall["details"]["sizes"]
    assert sizes["2000"]["kind"] == "flat" and recall["value"]["2000"] == 1.0  # exact search
    assert sizes["60000"]["kind"] == "hnsw" and recall["value"]["60000"] >= 0.9


@pytest.mark.slow
def test_ranks_script(tmp_path):
    results = run_script(tmp_path, "ranks", "--samples", "32", "--steps", "2")
    extraction, training = (
        results["extract_ranks_max_abs_diff"],
        results["ddp_equivalence_max_abs_diff"],
    )
    assert extraction["value"] == 0.0 and extraction["details"]["files_differing"] == []
    assert 0 <= training["value"] < 1e-4 and training["details"]["global_batch"] == 16


@pytest.mark.slow
def test_layout_script(tmp_path):
    args = ["--images", "4", "--vcr-samples", "6", "--device", "cpu"]
    results = run_script(tmp_path, "layout", *args)
    dedup, ragged = results["image_dedup_bytes_ratio"], results["ragged_text_bytes_ratio"]
    # 4 images of 10 samples in one shard: each image's fields stored once
    assert dedup["value"] == 0.1 and dedup["details"]["samples"] == 40
    text = ragged["details"]["text_bytes_per_sample"]
    assert 0 < ragged["value"] == round(text["ragged"] / text["padded"], 4) < 1


@pytest.mark.slow
def test_groups_script(tmp_path):
    results = run_script(tmp_path, "groups", "--samples", "8", "--device", "cpu")
    reads, added = results["column_read_bytes_ratio"], results["add_group_time_ratio"]
    details = reads["details"]
    assert details["samples"] == 8
    assert reads["value"] == round(
        details["text_only_bytes_read"] / details["all_fields_bytes_read"], 4
    )
    assert 0 < reads["value"] < 1 and reads["target"].startswith("<= ")
    assert 0 < added["value"] < 1 and len(added["details"]["seconds"]["add"]) == 2
