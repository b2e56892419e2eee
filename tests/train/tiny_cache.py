"""Small caches written directly with the store API, for fast trainer tests.

SNLI-VE-like: the hypothesis is one colour word (``[CLS] <word> [SEP]`` in token ids) and the
label is the colour's class, so a student that reads it can learn the task in a few epochs.
VCR-like: 8 candidates, the gold ones carry a marker word. VQA-like: the answer is the colour.
Every sample's json holds its texts and the cache holds each token's character span, so
students with their own tokenizer can train on it too. ``tokenizer`` (a transformers tokenizer)
makes the cached token ids that tokenizer's, as a real extraction with that text teacher would;
``regions`` adds VCR-style region fields (teacher ``regions``, ``student_regions``, counts).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extract.store import CacheBuilder, CacheSpec, FieldSpec, ShardLimits

VOCAB = 50
WORDS = [11, 12, 13]  # one token per label
TEXT = {11: "red", 12: "green", 13: "blue", 20: "right", 21: "wrong", 22: "since", 23: "unless"}
LENGTH = 6
GRID = 4
WIDTH = 8
REGIONS = 4
STUDENT_REGION_WIDTH = 6


def fields(
    num_texts: int,
    image_tokens: bool = True,
    grid_width: int = WIDTH,
    regions: bool = False,
) -> dict[str, FieldSpec]:
    specs = [
        FieldSpec("pixels", (GRID, 4 * 4 * 3), "uint8"),
        FieldSpec("token_ids", (num_texts, LENGTH), "int32"),
        FieldSpec("token_len", (num_texts,), "int32"),
        FieldSpec("token_spans", (num_texts, LENGTH, 2), "int32"),
        FieldSpec("img_emb", (WIDTH,), "fp32"),
        FieldSpec("txt_emb", (num_texts, WIDTH), "fp32"),
        FieldSpec("txt_tok", (num_texts, LENGTH, WIDTH), "fp32"),
    ]
    if image_tokens:
        specs.append(FieldSpec("img_grid", (16, grid_width), "fp32"))  # a 4x4 teacher grid
    if regions:
        specs += [
            FieldSpec("regions", (REGIONS, grid_width), "fp32"),
            FieldSpec("student_regions", (REGIONS, STUDENT_REGION_WIDTH), "fp32"),
            FieldSpec("region_count", (1,), "int32"),
        ]
    return {spec.name: spec for spec in specs}


def tokens(word: int) -> np.ndarray:
    row = np.zeros(LENGTH, dtype=np.int64)
    row[:3] = [1, word, 2]
    return row


def encode_texts(words: list[int], tokenizer, suffix: str = "") -> dict[str, np.ndarray]:
    """Token ids, lengths and spans of the texts, in the fake vocabulary or ``tokenizer``'s."""
    texts = [TEXT[word] + suffix for word in words]
    if tokenizer is None:
        spans = np.zeros((len(words), LENGTH, 2), dtype=np.int64)
        spans[:, 1, 1] = [len(text) for text in texts]  # [CLS] <word> [SEP]: only the word
        return {
            "token_ids": np.stack([tokens(word) for word in words]),
            "token_len": np.full(len(words), 3),
            "token_spans": spans,
        }
    encoded = tokenizer(
        texts,
        padding="max_length",
        max_length=LENGTH,
        truncation=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="np",
    )
    spans = encoded["offset_mapping"]
    spans[encoded["special_tokens_mask"].astype(bool)] = 0
    return {
        "token_ids": encoded["input_ids"],
        "token_len": encoded["attention_mask"].sum(1),
        "token_spans": spans,
    }


def sample(
    rng, words: list[int], specs: dict[str, FieldSpec], tokenizer=None, suffix: str = ""
) -> dict[str, np.ndarray]:
    arrays = encode_texts(words, tokenizer, suffix)
    for name, spec in specs.items():
        if name in arrays:
            continue
        if name == "pixels":
            arrays[name] = rng.integers(0, 256, spec.shape, dtype=np.uint8)
        elif name == "region_count":
            arrays[name] = rng.integers(1, REGIONS + 1, (1,))
        else:
            arrays[name] = rng.standard_normal(spec.shape).astype(np.float32)
    return arrays


def task_meta(kind: str) -> dict:
    if kind == "snli_ve":
        return {
            "name": "snli_ve",
            "kind": "classification",
            "labels": ["entailment", "neutral", "contradiction"],
        }
    if kind == "vcr":
        return {
            "name": "vcr",
            "kind": "multiple_choice",
            "groups": {"qa": [0, 4], "qar": [4, 8]},
            "num_choices": 4,
        }
    return {
        "name": "vqa",
        "kind": "soft_score",
        "answer_vocab": ["red", "green", "blue"],
        "min_answer_count": 1,
    }


def build(
    out: Path,
    kind: str = "snli_ve",
    counts=None,
    image_tokens: bool = True,
    seed: int = 0,
    grid_width: int = WIDTH,  # a ViT's token grid is wider than its pooled embedding
    tokenizer=None,
    regions: bool = False,
    text_suffix: str = "",  # with a tokenizer: longer texts, which LENGTH tokens may cut
    poison: tuple[str, str] | None = None,  # (key, field): NaN there, its sha256 matching
    roles: dict[str, dict] | None = None,  # split -> {"role", "labels"}, as an extraction records
    fmt: str = "wds",  # or "hdf5"
) -> Path:
    counts = counts or {"train": 60, "val": 30, "test": 12}
    num_texts = 8 if kind == "vcr" else 1
    specs = fields(num_texts, image_tokens, grid_width, regions)
    spec = CacheSpec(
        format=fmt,
        dataset={"adapter": kind, "inputs": {}},
        fields=specs,
        task=task_meta(kind),
        config={
            "text_vocab_size": VOCAB if tokenizer is None else len(tokenizer),
            "student_input_field": "pixels",
            "means_split": "train",
            **({} if roles is None else {"split_roles": roles}),
        },
        limits=ShardLimits(max_count=16),
    )
    builder = CacheBuilder(out, spec, allow_nonfinite=poison is not None)
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        with builder.split(split) as writer:
            for i in range(count):
                words, meta = make_texts(kind, i, rng)
                if split == "test" and kind != "vqa":
                    meta = {k: v for k, v in meta.items() if not k.endswith("label")}
                meta["source"] = "lsmdc" if i % 2 else "movieclips"
                meta["texts"] = [TEXT[word] + text_suffix for word in words]
                arrays = sample(rng, words, specs, tokenizer, text_suffix)
                if poison is not None and poison[0] == f"{split}-{i}":
                    arrays[poison[1]].flat[0] = np.nan
                writer.write(f"{split}-{i}", arrays, meta)
    for name, spec in builder.spec.fields.items():
        if spec.storage == "fp32":
            builder.put_shared(f"mean_{name}", np.zeros(spec.shape[-1], dtype=np.float32))
    builder.finish()
    return out


def make_texts(kind: str, i: int, rng) -> tuple[list[int], dict]:
    label = i % 3
    if kind == "snli_ve":
        return [WORDS[label]], {"label": label}
    if kind == "vqa":
        answers = [["red", "green", "blue"][label]] * 10
        return [WORDS[label]], {
            "answers": answers, "answer_type": "other", "question_type": "what color",
            "targets": {str(label): 1.0}, "question_id": 1000 + i,
        }  # fmt: skip
    answer, rationale = int(rng.integers(4)), int(rng.integers(4))
    words = [20 if c == answer else 21 for c in range(4)]
    words += [22 if c == rationale else 23 for c in range(4)]
    return words, {"answer_label": answer, "rationale_label": rationale}
