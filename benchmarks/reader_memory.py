"""``python -m benchmarks.reader_memory``: ``reader_memory_growth``.

Two caches with the demo's fields and sizes (154 KB per sample: a 49 x 1280 fp16 image grid,
16 x 384 text tokens, 64 px pixels, ...), one 10x larger than the other, are written with the
store's writer. Each is then read whole in a fresh process, the way the trainer reads it: streamed
(shards in sequence through a shuffle buffer, batches of 64) and by key in a shuffled order. The
figure is the peak resident memory (ru_maxrss) of reading the 10x cache over that of the 1x cache;
a reader that kept samples, shards or per-sample state would grow with the cache.
"""

from __future__ import annotations

import json
import random
import resource
import subprocess
import sys
from pathlib import Path

import click
import numpy as np

from benchmarks.common import WORK, pick_device, record

COMMAND = "python -m benchmarks.reader_memory"
BATCH = 64
SHAPES = {  # the demo cache's fields: (shape, storage)
    "img_emb": ((1280,), "fp16"),
    "txt_emb": ((1, 384), "fp16"),
    "token_ids": ((1, 16), "int32"),
    "token_len": ((1,), "int32"),
    "img_grid": ((49, 1280), "fp16"),
    "txt_tok": ((1, 16, 384), "fp16"),
    "pixels": ((16, 768), "uint8"),
}


def write_cache(out: Path, samples: int) -> Path:
    """A cache of ``samples`` samples (a no-op when it is already there)."""
    from extract.store import CacheBuilder, CacheSpec, FieldSpec

    fields = {name: FieldSpec(name, shape, storage) for name, (shape, storage) in SHAPES.items()}
    spec = CacheSpec(
        format="wds",
        dataset={"adapter": "benchmark", "inputs": {}, "samples": samples},
        fields=fields,
        task={"name": "benchmark"},
        config={},
    )
    builder = CacheBuilder(out, spec)
    if builder.complete:
        return out
    rng = np.random.default_rng(0)
    templates = [sample_arrays(rng) for _ in range(16)]  # contents do not matter, sizes do
    with builder.split("train") as writer:
        for i in range(writer.resume_position, samples):
            writer.write(f"{i:08d}", templates[i % len(templates)], {"question_id": i})
    builder.finish()
    return out


def sample_arrays(rng) -> dict[str, np.ndarray]:
    arrays = {}
    for name, (shape, storage) in SHAPES.items():
        if storage == "fp16":
            arrays[name] = rng.standard_normal(shape).astype(np.float32)
        else:
            dtype = np.int32 if storage == "int32" else np.uint8
            arrays[name] = rng.integers(0, 200, shape).astype(dtype)
    return arrays


def read_whole(cache: Path, mode: str) -> dict:
    """Read every sample of the cache once; returns counts and the peak RSS in MiB."""
    import torch  # noqa: F401  (imported before the baseline: the trainer always has it)
    from torch.utils.data import DataLoader

    from extract.store import CacheReader, StreamingDataset

    before = peak_mib()
    fields = list(SHAPES)
    count = 0
    if mode == "streamed":
        stream = StreamingDataset(cache, "train", fields, as_float32=False, shuffle=True, seed=0)
        for batch in DataLoader(stream, batch_size=BATCH, collate_fn=stack):
            count += len(batch["img_grid"])
    else:
        split = CacheReader(cache).split("train", fields)
        keys = list(split.keys())
        random.Random(0).shuffle(keys)
        for start in range(0, len(keys), BATCH):
            batch = stack([split[key] for key in keys[start : start + BATCH]])
            count += len(batch["img_grid"])
    return {"samples": count, "peak_mib": peak_mib(), "before_reading_mib": before}


def stack(samples: list[dict]) -> dict:
    import torch

    return {name: torch.from_numpy(np.stack([s[name] for s in samples])) for name in SHAPES}


def growth(measured: dict) -> float:
    return max(measured["peak_mib"] - measured["before_reading_mib"], 0.1)


def peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def measure(cache: Path, mode: str) -> dict:
    """``read_whole`` in a fresh process, so that each peak is its own."""
    code = (
        "import json, sys; from benchmarks.reader_memory import read_whole; "
        "print(json.dumps(read_whole(sys.argv[1], sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(cache), mode], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"reading {cache} ({mode}) failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@click.command()
@click.option("--samples", default=1000, show_default=True, help="Samples of the 1x cache.")
def main(samples: int) -> None:
    """Peak memory of reading a 10x larger cache over that of a 1x cache."""
    small = write_cache(WORK / f"memory-{samples}", samples)
    large = write_cache(WORK / f"memory-{10 * samples}", 10 * samples)
    details, ratios = {}, []
    for mode in ("streamed", "keyed"):
        one, ten = measure(small, mode), measure(large, mode)
        details[mode] = {
            "1x": one,
            "10x": ten,
            "ratio": round(ten["peak_mib"] / one["peak_mib"], 3),
            # the same without the interpreter, numpy and torch (about 500 MiB here)
            "reading_growth_ratio": round(growth(ten) / growth(one), 3),
        }
        ratios.append(details[mode]["ratio"])
    details["bytes_1x"] = sum(p.stat().st_size for p in small.rglob("*.tar"))
    details["bytes_10x"] = sum(p.stat().st_size for p in large.rglob("*.tar"))
    record("reader_memory_growth", max(ratios), COMMAND, pick_device("cpu"), details)


if __name__ == "__main__":
    main()
