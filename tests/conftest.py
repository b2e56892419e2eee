"""Shared fixtures: small caches built from seeded random arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from extract.store import CacheBuilder, CacheSpec, FieldSpec, ShardLimits

FIELDS = {
    "img_emb": FieldSpec("img_emb", (8,), "fp16", producer="test-vision@abc"),
    "txt_tok": FieldSpec("txt_tok", (2, 3, 8), "int8", producer="test-text@def"),
    "img_raw": FieldSpec("img_raw", (4,), "fp32", producer="test-vision@abc"),
    # a 1-D int8 field: its scale is one number per sample (a 0-d array)
    "img_q": FieldSpec("img_q", (8,), "int8", producer="test-vision@abc"),
    "pixels": FieldSpec("pixels", (2, 2, 3), "uint8", producer="pixels:2"),
    "token_ids": FieldSpec("token_ids", (2, 3), "int32", producer="test-tokenizer"),
}


def make_spec(fmt: str = "wds", max_count: int = 4, **changes) -> CacheSpec:
    values = dict(
        format=fmt,
        dataset={"adapter": "test", "inputs": {"train.jsonl": {"bytes": 10, "sha256": "00"}}},
        fields=dict(FIELDS),
        task={"kind": "multiple_choice", "num_choices": 2},
        config={"teachers": ["test-vision", "test-text"]},
        limits=ShardLimits(max_count=max_count),
    )
    values.update(changes)
    return CacheSpec(**values)


def make_sample(index: int, fields=FIELDS) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(index)
    arrays = {}
    for name, spec in fields.items():
        if spec.storage == "uint8":
            arrays[name] = rng.integers(0, 256, spec.shape, dtype=np.uint8)
        elif spec.storage == "int32":
            arrays[name] = rng.integers(0, 30000, spec.shape, dtype=np.int64)
        else:
            arrays[name] = rng.standard_normal(spec.shape).astype(np.float32)
    return arrays


def sample_key(index: int) -> str:
    # dots and slashes on purpose: real ids (SNLI-VE pairIDs) have them
    return f"img{index}.jpg#{index % 3}r/{index}"


def build_cache(
    out: Path, fmt: str = "wds", splits=None, max_count: int = 4, **spec_changes
) -> dict:
    """Write a cache; returns the written arrays per split and key."""
    splits = splits or {"train": 10, "val": 3}
    builder = CacheBuilder(out, make_spec(fmt, max_count, **spec_changes))
    written: dict[str, dict[str, dict]] = {}
    for split, count in splits.items():
        written[split] = {}
        with builder.split(split) as writer:
            for i in range(count):
                arrays = make_sample(i + 1000 * len(written))
                key = f"{split}-{sample_key(i)}"
                writer.write(key, arrays, {"label": i % 2, "texts": [f"text {i}", "ß ü"]})
                written[split][key] = arrays
    builder.put_shared("answer_vocab", ["yes", "no"])
    builder.put_shared("answer_emb", np.arange(6, dtype=np.float32).reshape(2, 3))
    builder.finish(timing={"encode_s": 1.0}, runtime={"batch_size": 2})
    return written


@pytest.fixture(params=["wds", "hdf5"])
def fmt(request) -> str:
    return request.param


@pytest.fixture
def cache(tmp_path, fmt) -> tuple[Path, dict]:
    out = tmp_path / "cache"
    return out, build_cache(out, fmt)
