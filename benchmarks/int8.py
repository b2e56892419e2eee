"""``python -m benchmarks.int8``: ``int8_bytes_ratio``, ``int8_cosine_error``,
``int8_accuracy_delta``.

The demo's VQA data is extracted twice with the demo's settings, ``--storage fp16`` (the default)
and ``--storage int8`` (one float32 scale per vector), and ``--distill mad`` is trained on each
with the settings and seeds the first demo used (``MAD_RUN``).

* ``int8_bytes_ratio``: bytes per sample of the fields ``--storage`` governs (the teachers'
  features; tar headers and padding included, over every sample), int8 over fp16. The student's
  input (uint8 pixels, int32 token ids) and the json are the same bytes in both caches.
* ``int8_whole_sample_bytes_ratio`` (reported): the same over whole samples (shards and offset
  indices), with the floor a perfect halving of the features would give it in the details.
* ``int8_cosine_error``: mean ``1 - cos`` of the int8 round trip of the teachers' float32 outputs
  on the first 256 training samples, per stored vector (pooled embeddings, grid cells, real text
  tokens); the field with the largest mean is the figure. The same after centring by the cache's
  means (what the trainer compares) is in the details.
* ``int8_accuracy_delta``: test accuracy (VQA, mean over seeds of the per-seed difference) of the
  int8 cache minus the fp16 cache, in points.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import click
import numpy as np
import torch

from benchmarks.common import (
    WORK,
    Extraction,
    member_bytes,
    pick_device,
    record,
    shard_files,
    shards,
)
from extract.store import CacheReader

COMMAND = "python -m benchmarks.int8"
SAMPLES_FOR_COSINE = 256


def extract(storage: str, device: torch.device) -> Path:
    """The demo's VQA extraction (every split) with ``storage``; a cache hit when it is there."""
    setup = Extraction(f"int8-demo-{storage}", splits=None, storage=storage, demo=True)
    setup.run(device)
    return WORK / setup.name


def bytes_per_sample(cache: Path) -> float:
    """Shard bytes (tar files and their offset indices) per sample, over every split."""
    stored = sum(size for _, size in shard_files(cache))  # the base's and the group's
    return stored / sum(shard.count for shard in shards(cache))


def quantised_fields(cache: Path) -> set[str]:
    """The fields ``--storage int8`` stores as int8: the teachers' features."""
    fields = CacheReader(cache).fields  # the base's and the teachers' group's
    return {name for name, spec in fields.items() if spec.storage == "int8"}


def teacher_outputs(device: torch.device) -> dict[str, np.ndarray]:
    """float32 teacher outputs of the first training samples, as the extraction computes them."""
    from extract.encode import encode_batch

    setup = Extraction("int8-cosine", storage="fp32", demo=True)
    plan, items = setup.decoded(SAMPLES_FOR_COSINE, device)
    rows = []
    for start in range(0, len(items), 32):
        rows += encode_batch(plan, items[start : start + 32], device)
    names = [n for n in ("img_emb", "img_grid", "txt_emb", "txt_tok") if n in plan.fields]
    return {n: np.stack([row[n] for row in rows]) for n in names + ["token_len"]}


def vectors(name: str, values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The stored vectors of a field as rows (text tokens: only the real ones)."""
    if name == "txt_tok":  # [N, C, L, D]
        keep = np.arange(values.shape[2])[None, None, :] < lengths[..., None]
        return values[keep]
    return values.reshape(-1, values.shape[-1])


def cosine_errors(outputs: dict, means: dict[str, np.ndarray]) -> dict:
    from extract.store import FieldSpec, decode, encode

    errors = {}
    for name in (n for n in outputs if n != "token_len"):
        spec = FieldSpec(name, outputs[name].shape[1:], "int8")
        restored = np.stack(
            [decode(spec, *encode(spec, sample), as_float32=True) for sample in outputs[name]]
        )
        original = vectors(name, outputs[name], outputs["token_len"])
        rounded = vectors(name, restored, outputs["token_len"])
        errors[name] = {
            "raw": mean_cosine_error(original, rounded),
            "centred": mean_cosine_error(original - means[name], rounded - means[name]),
        }
    return errors


def mean_cosine_error(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return float(np.mean(1.0 - (a * b).sum(-1)))


# a mad run as the first demo trained it: 25% of train, 3 seeds, 15 epochs
MAD_RUN = [
    "--distill", "mad", "--topk", "0.5", "--lambda", "1.0", "--train-fraction", "0.25",
    "--seeds", "1,2,3", "--epochs", "15", "--batch-size", "64", "--lr", "1e-3",
    "--eval-split", "val,test,test_shifted",
]  # fmt: skip


def train_mad(cache: Path, name: str, device: torch.device) -> tuple[Path, str | None]:
    """A mad run on ``cache``, and the date of an earlier run it reuses (or None)."""
    out = WORK / "int8-runs" / "runs" / name
    results = out / "results.json"
    if results.is_file():
        return out, date.fromtimestamp(results.stat().st_mtime).isoformat()
    command = [sys.executable, "-m", "train.run", "--cache", str(cache), *MAD_RUN]
    command += ["--device", device.type, "--out", str(out)]
    subprocess.run(command, check=True)
    return out, None


def accuracy_delta(fp16_run: Path, int8_run: Path) -> tuple[float, dict]:
    from train.compare import load_scores

    fp16, int8 = load_scores(fp16_run), load_scores(int8_run)
    details = {}
    for split in fp16:
        a, b = fp16[split]["overall"]["values"], int8[split]["overall"]["values"]
        deltas = [round(y - x, 2) for x, y in zip(a, b, strict=True)]
        details[split] = {
            "fp16": a,
            "int8": b,
            "per_seed_delta": deltas,
            "mean_delta": round(float(np.mean(deltas)), 2),
        }
    return details["test"]["mean_delta"], details


@click.command()
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda"]))
def main(device: str) -> None:
    """int8 storage against fp16: bytes, vector error, and the demo's accuracy."""
    from extract.store import CacheReader

    torch_device = pick_device(device)
    command = f"{COMMAND} --device {device}"
    caches = {storage: extract(storage, torch_device) for storage in ("fp16", "int8")}
    sizes = {storage: bytes_per_sample(cache) for storage, cache in caches.items()}
    members = {storage: member_bytes(cache) for storage, cache in caches.items()}
    governed = quantised_fields(caches["int8"])
    features = {
        storage: sum(size for kind, size in by_kind.items() if kind[:-4] in governed)
        for storage, by_kind in members.items()
    }
    record(
        "int8_bytes_ratio",
        round(features["int8"] / features["fp16"], 3),
        command,
        torch_device,
        {
            "fields": sorted(governed),
            **{f"{s}_feature_bytes_per_sample": round(v) for s, v in features.items()},
            "bytes_per_sample_by_member": {
                s: {kind: round(v) for kind, v in by_kind.items()} for s, by_kind in members.items()
            },
        },
    )
    untouched = sizes["fp16"] - features["fp16"]  # student input, token ids, json, offset index
    record(
        "int8_whole_sample_bytes_ratio",
        round(sizes["int8"] / sizes["fp16"], 3),
        command,
        torch_device,
        {
            **{f"{s}_bytes_per_sample": round(v) for s, v in sizes.items()},
            "unchanged_bytes_per_sample": round(untouched),
            # what whole samples would come to if int8 halved the features with no overhead
            "floor": round((untouched + features["fp16"] / 2) / sizes["fp16"], 3),
        },
    )
    outputs = teacher_outputs(torch_device)
    reader = CacheReader(caches["fp16"])
    means = {name: reader.shared(f"mean_{name}") for name in outputs if name != "token_len"}
    errors = cosine_errors(outputs, means)
    worst = max(errors, key=lambda name: errors[name]["raw"])
    record(
        "int8_cosine_error",
        float(f"{errors[worst]['raw']:.3g}"),
        command,
        torch_device,
        {"field": worst, "per_field": errors, "samples": SAMPLES_FOR_COSINE},
    )
    runs = {s: train_mad(cache, f"mad-{s}", torch_device) for s, cache in caches.items()}
    delta, details = accuracy_delta(runs["fp16"][0], runs["int8"][0])
    details["runs_reused_from"] = {s: reused for s, (_, reused) in runs.items()}
    details["settings"] = "a mad run: 25% of train, seeds 1,2,3, 15 epochs, batch 64, lr 1e-3"
    record("int8_accuracy_delta", delta, command, torch_device, details)


if __name__ == "__main__":
    main()
