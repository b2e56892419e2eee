"""``python -m benchmarks.ranks``: the same results whatever the number of processes.

* ``extract_ranks_max_abs_diff``: the largest difference between the teacher features of a cache
  written by ``torchrun --nproc_per_node 2 -m extract.run`` (gloo) and by one process, over every
  sample and field of the synthetic VQA set (0 when byte-identical); the details say whether
  every other file is byte-identical too. Both runs use one thread per process, so a kernel whose
  result depends on the thread count cannot make a difference the ranks did not.
* ``ddp_equivalence_max_abs_diff``: the largest difference between the weights a 2-rank DDP run
  (``torchrun -m train.run``, 8 samples a rank) and a one-process run (16 samples) reach after the
  same steps with the same global batch, dropout off.

The device machine has one GPU, so both run on the CPU; nccl is the same code path with another
backend.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import ROOT, WORK, record, synthetic_data

COMMAND = "python -m benchmarks.ranks"


def launch(ranks: int, *arguments: str) -> float:
    """Run a module with ``ranks`` processes (torchrun when more than one); seconds taken."""
    runner = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    command = [sys.executable, *(runner if ranks > 1 else []), *arguments]
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
        text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise click.ClickException(f"{' '.join(arguments[:2])} failed:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def extract(ranks: int, out: Path, limit: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    return launch(
        ranks, "-m", "extract.run", "--dataset", "vqa", "--root", str(synthetic_data()),
        "--out", str(out), "--student-input", "pixels:16@64", "--max-text-length", "16",
        "--limit", str(limit), "--shard-samples", "64", "--workers", "0", "--device", "cpu",
    )  # fmt: skip


def feature_difference(one: Path, two: Path) -> tuple[float, list[str]]:
    """The largest difference of any stored value, and the files whose bytes differ."""
    from extract.store import CacheReader

    differing = [
        path.relative_to(one).as_posix()
        for path in sorted(one.rglob("*"))
        if path.is_file()
        and path.name != "manifest.json"
        and path.read_bytes() != (two / path.relative_to(one)).read_bytes()
    ]
    largest = 0.0
    first, second = CacheReader(one, as_float32=True), CacheReader(two, as_float32=True)
    for split in first.splits:
        for a, b in zip(first.split(split), second.split(split), strict=True):
            assert a["__key__"] == b["__key__"], (a["__key__"], b["__key__"])
            for name in first.fields:
                difference = np.abs(np.asarray(a[name], np.float64) - np.asarray(b[name]))
                largest = max(largest, float(difference.max(initial=0.0)))
    return largest, differing


def train(ranks: int, cache: Path, out: Path, batch_size: int, steps: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    return launch(
        ranks, "-m", "train.run", "--cache", str(cache), "--out", str(out), "--epochs", "1",
        "--train-count", str(16 * steps), "--batch-size", str(batch_size), "--dropout", "0",
        "--distill", "mad", "--eval-split", "val", "--device", "cpu",
    )  # fmt: skip


@click.command()
@click.option("--samples", default=256, show_default=True, help="Samples per split extracted.")
@click.option("--steps", default=8, show_default=True, help="Optimiser steps compared.")
def main(samples: int, steps: int) -> None:
    """World size 2 against 1: cache bytes and features, then trained weights."""
    if 16 * steps > samples:
        raise click.BadParameter(
            f"{steps} steps of 16 need {16 * steps} samples", param_hint="--samples"
        )
    folder = WORK / "ranks"
    seconds = {f"extract_{n}": extract(n, folder / f"cache-{n}", samples) for n in (1, 2)}
    largest, differing = feature_difference(folder / "cache-1", folder / "cache-2")
    device = torch.device("cpu")
    record(
        "extract_ranks_max_abs_diff", largest, COMMAND, device,
        {"files_differing": differing[:20], "samples_per_split": samples, "seconds": seconds},
    )  # fmt: skip
    for n, batch in ((1, 16), (2, 8)):
        seconds[f"train_{n}"] = train(n, folder / "cache-1", folder / f"run-{n}", batch, steps)
    one, two = (
        torch.load(folder / f"run-{n}" / "last.pt", weights_only=False)["model"] for n in (1, 2)
    )
    difference = max(float((one[name] - two[name]).abs().max()) for name in one)
    scores = [
        json.loads((folder / f"run-{n}" / "results.json").read_text())["splits"]["val"]["score"]
        for n in (1, 2)
    ]
    record(
        "ddp_equivalence_max_abs_diff", difference, COMMAND, device,
        {"steps": steps, "global_batch": 16, "val_scores": scores, "seconds": seconds},
    )  # fmt: skip


if __name__ == "__main__":
    main()
