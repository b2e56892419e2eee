"""``python -m benchmarks.groups``: what column groups cost and save, on the bench's synthetic VQA
(default teachers, ``pixels:16`` at 224 px).

* ``column_read_bytes_ratio``: bytes read (``rchar`` of ``/proc/self/io``: what the reader asks
  the system for) by one epoch of the trainer's stream reading only what a text-only run needs
  (``token_ids``, ``token_len``, ``txt_tok`` and the json), over the same epoch reading every
  field. Target: at most the text fields' share of the stored bytes + 0.05 (the share is in
  the details; the target is checked against it here, so ``met`` is this run's verdict).
* ``add_group_time_ratio``: wall time of ``--add-teachers`` (a second group, the random-weight
  control ``effnet-lite0:random,minilm:random``) over the time to extract the cache with both
  groups from scratch (the first extraction plus the addition). Target: at most the second
  group's share of the teachers' forward time (timed alone on the same images, interleaved)
  + 0.10.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click
import torch

from benchmarks.common import WORK, Extraction, pick_device, record, synchronize

COMMAND = "python -m benchmarks.groups"
SECOND = "effnet-lite0:random,minilm:random"
TEXT_ONLY = ["token_ids", "token_len", "txt_tok"]


def bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no rchar")


def epoch_bytes(cache: Path, fields: list[str] | None) -> tuple[int, int]:
    """Bytes read by one pass of the stream over the training split, and its sample count."""
    from extract.store import StreamingDataset

    stream = StreamingDataset(cache, "train", fields, as_float32=False)
    before = bytes_read()
    count = sum(1 for _ in stream)
    return bytes_read() - before, count


def column_reads(cache: Path, device: torch.device) -> None:
    from benchmarks.common import member_bytes

    text_bytes, count = epoch_bytes(cache, TEXT_ONLY)
    all_bytes, _ = epoch_bytes(cache, None)
    from extract.store import CacheReader

    members = member_bytes(cache, [CacheReader(cache).group])  # what the all-fields epoch reads
    text_share = sum(v for k, v in members.items() if k[: -len(".npy")] in TEXT_ONLY + ["json"])
    share = text_share / sum(members.values())
    ratio = text_bytes / all_bytes
    record(
        "column_read_bytes_ratio",
        round(ratio, 4),
        COMMAND,
        device,
        {
            "samples": count,
            "text_only_bytes_read": text_bytes,
            "all_fields_bytes_read": all_bytes,
            "text_fields_share_of_stored_bytes": round(share, 4),
        },
        target=("<=", round(share + 0.05, 4)),
    )


def forward_seconds(setup: Extraction, teachers: str, device: torch.device, count: int) -> float:
    """The teachers' forward passes alone (and the student input for the first group)."""
    from extract.encode import encode_batch
    from extract.plan import BASE_FIELDS

    plan, items = Extraction(setup.name, teachers=teachers).decoded(count, device)
    if teachers == SECOND:  # an added group computes no student input
        plan.fields = {n: f for n, f in plan.fields.items() if n not in BASE_FIELDS}
        plan.student = plan.image
    synchronize(device)
    started = time.perf_counter()
    for start in range(0, len(items), 32):
        encode_batch(plan, items[start : start + 32], device)
    synchronize(device)
    return time.perf_counter() - started


def add_group_time(device: torch.device, samples: int) -> None:
    from extract.extraction import run_extraction

    setup = Extraction("groups-add", limit=samples, build_indices=False)
    out = WORK / setup.name
    runs: dict[str, list[float]] = {"first": [], "add": [], "forward_first": [], "forward_add": []}
    for _ in range(2):  # interleaved; each side's fastest run counts
        shutil.rmtree(out, ignore_errors=True)
        started = time.perf_counter()
        run_extraction(setup.config(device))
        runs["first"].append(time.perf_counter() - started)
        config = setup.config(device)
        config.plan.teachers, config.add_teachers = SECOND, True
        started = time.perf_counter()
        run_extraction(config)
        runs["add"].append(time.perf_counter() - started)
        runs["forward_first"].append(forward_seconds(setup, setup.teachers, device, samples))
        runs["forward_add"].append(forward_seconds(setup, SECOND, device, samples))
    best = {name: min(times) for name, times in runs.items()}
    ratio = best["add"] / (best["first"] + best["add"])
    share = best["forward_add"] / (best["forward_first"] + best["forward_add"])
    record(
        "add_group_time_ratio",
        round(ratio, 4),
        f"{COMMAND} --samples {samples}",
        device,
        {
            "samples": samples,
            "second_group": SECOND,
            "seconds": {name: [round(t, 2) for t in times] for name, times in runs.items()},
            "second_group_share_of_forward": round(share, 4),
        },
        target=("<=", round(share + 0.10, 4)),
    )


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("--samples", default=256, help="Training questions of the synthetic VQA.")
def main(device: str, samples: int) -> None:
    """Bytes a text-only epoch reads, and the time to add a second teachers' group."""
    torch_device = pick_device(device)
    add_group_time(torch_device, samples)
    column_reads(WORK / "groups-add", torch_device)


if __name__ == "__main__":
    main()
