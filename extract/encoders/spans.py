"""Character spans of a text teacher's tokens, so that a student with another tokenizer can align
its own tokens to the teacher's (``train.align``).

A span is ``(start, end)`` in characters of the text as given (the one stored in the sample's
json); special tokens and padding get ``(0, 0)``, an empty span that overlaps nothing. Fast
transformers tokenizers report offsets themselves. open_clip's BPE tokenizer does not: it cleans
the text first (ftfy, HTML unescaping, whitespace collapsed, lower case), so its spans are found
on the cleaned text and mapped back to the original characters.
"""

from __future__ import annotations

import difflib

import numpy as np

NO_SPAN = (0, 0)


def hf_spans(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """``[N, max_length, 2]`` spans from a fast tokenizer, tokenized exactly as ``hf_tokenize``."""
    return hf_tokens(tokenizer, texts, max_length)[2]


def hf_tokens(tokenizer, texts: list[str], max_length: int):
    """Token ids ``[N, L]``, lengths ``[N]`` and spans ``[N, L, 2]`` in one tokenizer call (a
    second call for the spans alone would double the text cost of an extraction)."""
    import torch

    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"the tokenizer {type(tokenizer).__name__} is not a fast (Rust) tokenizer, so it "
            "cannot give character offsets; use a model directory that has tokenizer.json"
        )
    batch = tokenizer(
        texts,
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="np",
    )
    spans = batch["offset_mapping"].astype(np.int32)
    spans[batch["special_tokens_mask"].astype(bool)] = NO_SPAN
    ids = torch.from_numpy(batch["input_ids"].astype(np.int64))
    return ids, torch.from_numpy(batch["attention_mask"].sum(1).astype(np.int64)), spans


def clip_bpe_spans(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """``[N, max_length, 2]`` spans for open_clip's ``SimpleTokenizer`` (start token, BPE pieces,
    end token; truncated as open_clip truncates: the last kept token becomes the end token)."""
    spans = np.zeros((len(texts), max_length, 2), dtype=np.int32)
    for row, text in enumerate(texts):
        pieces = [NO_SPAN, *bpe_piece_spans(tokenizer, text), NO_SPAN]
        if len(pieces) > max_length:
            pieces = pieces[:max_length]
            pieces[-1] = NO_SPAN
        spans[row, : len(pieces)] = pieces
    return spans


def bpe_piece_spans(tokenizer, text: str) -> list[tuple[int, int]]:
    """One span per BPE token of ``tokenizer.encode(text)``, in characters of ``text``."""
    cleaned = tokenizer.clean_fn(text)
    to_original = cleaned_to_original(cleaned, text)
    spans = []
    for match in tokenizer.pat.finditer(cleaned):
        word = match.group()
        byte_owner = [i for i, char in enumerate(word) for _ in char.encode("utf-8")]
        encoded = "".join(tokenizer.byte_encoder[b] for b in word.encode("utf-8"))
        offset = 0
        for piece in tokenizer.bpe(encoded).split(" "):
            size = len(piece.removesuffix("</w>"))  # one character per byte
            start = match.start() + byte_owner[offset]
            stop = match.start() + byte_owner[offset + size - 1] + 1
            spans.append(original_span(to_original, start, stop))
            offset += size
    return spans


def cleaned_to_original(cleaned: str, original: str) -> list[int | None]:
    """For each character of the cleaned text, its position in the original (None if none).

    The usual cleaning only collapses whitespace and lower-cases, which a walk over both strings
    follows exactly; anything else (ftfy repairs, HTML entities) falls back to difflib's matching
    blocks, and characters outside them map to nothing.
    """
    mapping: list[int | None] = []
    position = 0
    for char in cleaned:
        if char == " ":  # collapsed whitespace: it belongs to no token
            mapping.append(None)
            continue
        while position < len(original) and original[position].isspace():
            position += 1
        if position >= len(original) or original[position].lower() != char.lower():
            return _matched_blocks(cleaned, original)
        mapping.append(position)
        position += 1
    return mapping


def _matched_blocks(cleaned: str, original: str) -> list[int | None]:
    """Both texts lower-cased, each character remembering whose it was (lower-casing can
    change a character's length: "İ" -> "i̇"), matched with difflib."""
    lowered_cleaned, cleaned_owner = _lowered(cleaned)
    lowered_original, original_owner = _lowered(original)
    mapping: list[int | None] = [None] * len(cleaned)
    matcher = difflib.SequenceMatcher(None, lowered_cleaned, lowered_original, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            mapping[cleaned_owner[block.a + k]] = original_owner[block.b + k]
    return mapping


def _lowered(text: str) -> tuple[str, list[int]]:
    return text.lower(), [i for i, char in enumerate(text) for _ in char.lower()]


def original_span(to_original: list[int | None], start: int, stop: int) -> tuple[int, int]:
    """The original characters a cleaned span ``[start, stop)`` covers; ``(0, 0)`` if none."""
    mapped = [p for p in to_original[start:stop] if p is not None]
    return (min(mapped), max(mapped) + 1) if mapped else NO_SPAN


def is_clip_bpe(tokenizer) -> bool:
    bpe = hasattr(tokenizer, "bpe") and hasattr(tokenizer, "pat")
    return bpe and getattr(tokenizer, "reduction_fn", None) is None


def openclip_gives_spans(tokenizer) -> bool:
    """open_clip's BPE tokenizer (plain truncation), or its wrapper of a fast transformers
    tokenizer in the standard mode; its other modes (e.g. reduction masks) give no spans."""
    if is_clip_bpe(tokenizer):
        return True
    inner = getattr(tokenizer, "tokenizer", None)
    return getattr(inner, "is_fast", False) and not getattr(tokenizer, "tokenizer_mode", "")


def openclip_spans(tokenizer, texts: list[str], max_length: int) -> np.ndarray:
    """Spans for an open_clip tokenizer: its BPE ``SimpleTokenizer``, or its wrapper of a
    transformers tokenizer (which cleans the texts, without lower-casing, before tokenizing;
    ``strip_sep_token`` only turns ``[SEP]`` into padding, and ``[SEP]`` has no span anyway)."""
    if is_clip_bpe(tokenizer):
        return clip_bpe_spans(tokenizer, texts, max_length)
    if not openclip_gives_spans(tokenizer):
        raise ValueError(f"open_clip's {type(tokenizer).__name__} gives no character spans")
    inner = tokenizer.tokenizer
    cleaned = [tokenizer.clean_fn(text) for text in texts]
    spans = hf_spans(inner, cleaned, max_length)
    for row, (clean, text) in enumerate(zip(cleaned, texts, strict=True)):
        to_original = cleaned_to_original(clean, text)
        for column, (start, stop) in enumerate(spans[row]):
            if stop > start:
                spans[row, column] = original_span(to_original, int(start), int(stop))
    return spans
