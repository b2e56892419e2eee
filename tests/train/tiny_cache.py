"""Small caches written directly with the store API, for fast trainer tests.

SNLI-VE-like: the hypothesis is ``[CLS] <colour word> [SEP]`` and the label is the colour's class,
so a student that reads its tokens can learn the task in a few epochs. VCR-like: 8 candidates, the
gold ones carry a marker token. VQA-like: the answer is the colour word.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from extract.store import CacheBuilder, CacheSpec, FieldSpec, ShardLimits

VOCAB = 50
WORDS = [11, 12, 13]  # one token per label
LENGTH = 6
GRID = 4
WIDTH = 8


def fields(
    num_texts: int, image_tokens: bool = True, grid_width: int = WIDTH
) -> dict[str, FieldSpec]:
    specs = [
        FieldSpec("pixels", (GRID, 4 * 4 * 3), "uint8"),
        FieldSpec("token_ids", (num_texts, LENGTH), "int32"),
        FieldSpec("token_len", (num_texts,), "int32"),
        FieldSpec("img_emb", (WIDTH,), "fp32"),
        FieldSpec("txt_emb", (num_texts, WIDTH), "fp32"),
        FieldSpec("txt_tok", (num_texts, LENGTH, WIDTH), "fp32"),
    ]
    if image_tokens:
        specs.append(FieldSpec("img_grid", (16, grid_width), "fp32"))  # a 4x4 teacher grid
    return {spec.name: spec for spec in specs}


def tokens(word: int) -> np.ndarray:
    row = np.zeros(LENGTH, dtype=np.int64)
    row[:3] = [1, word, 2]
    return row


def sample(
    rng, texts: list[np.ndarray], image_tokens: bool, grid_width: int = WIDTH
) -> dict[str, np.ndarray]:
    count = len(texts)
    arrays = {
        "pixels": rng.integers(0, 256, (GRID, 48), dtype=np.uint8),
        "token_ids": np.stack(texts),
        "token_len": np.full(count, 3),
        "img_emb": rng.standard_normal(WIDTH).astype(np.float32),
        "txt_emb": rng.standard_normal((count, WIDTH)).astype(np.float32),
        "txt_tok": rng.standard_normal((count, LENGTH, WIDTH)).astype(np.float32),
    }
    if image_tokens:
        arrays["img_grid"] = rng.standard_normal((16, grid_width)).astype(np.float32)
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
) -> Path:
    counts = counts or {"train": 60, "val": 30, "test": 12}
    num_texts = 8 if kind == "vcr" else 1
    spec = CacheSpec(
        format="wds",
        dataset={"adapter": kind, "inputs": {}},
        fields=fields(num_texts, image_tokens, grid_width),
        task=task_meta(kind),
        config={"text_vocab_size": VOCAB, "student_input_field": "pixels"},
        limits=ShardLimits(max_count=16),
    )
    builder = CacheBuilder(out, spec)
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        with builder.split(split) as writer:
            for i in range(count):
                texts, meta = make_texts(kind, i, rng)
                if split == "test" and kind != "vqa":
                    meta = {k: v for k, v in meta.items() if not k.endswith("label")}
                meta["source"] = "lsmdc" if i % 2 else "movieclips"
                writer.write(f"{split}-{i}", sample(rng, texts, image_tokens, grid_width), meta)
    for name, spec in builder.spec.fields.items():
        if spec.storage == "fp32":
            builder.put_shared(f"mean_{name}", np.zeros(spec.shape[-1], dtype=np.float32))
    builder.finish()
    return out


def make_texts(kind: str, i: int, rng) -> tuple[list[np.ndarray], dict]:
    label = i % 3
    if kind == "snli_ve":
        return [tokens(WORDS[label])], {"label": label}
    if kind == "vqa":
        answers = [["red", "green", "blue"][label]] * 10
        return [tokens(WORDS[label])], {
            "answers": answers, "answer_type": "other", "question_type": "what color",
            "targets": {str(label): 1.0}, "question_id": 1000 + i,
        }  # fmt: skip
    answer, rationale = int(rng.integers(4)), int(rng.integers(4))
    texts = [tokens(20 if c == answer else 21) for c in range(4)]
    texts += [tokens(22 if c == rationale else 23) for c in range(4)]
    return texts, {"answer_label": answer, "rationale_label": rationale}
