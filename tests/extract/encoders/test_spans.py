"""Character spans of the teachers' tokens (what students with other tokenizers align to)."""

import numpy as np
import open_clip
import pytest
import torch
from transformers import AutoTokenizer

from extract.encoders.packaged import minilm_path
from extract.encoders.spans import cleaned_to_original, clip_bpe_spans, hf_spans

TEXTS = [
    "A  Doughnut on a skateboard's edge!",
    "naïve café, 3.5 km",
    "Tom &amp; Jerry\tare   HERE",  # an HTML entity: open_clip's cleaning changes the length
]


@pytest.fixture(scope="module")
def bpe():
    return open_clip.get_tokenizer("ViT-B-32")


@pytest.fixture(scope="module")
def wordpiece():
    return AutoTokenizer.from_pretrained(minilm_path())


def test_bpe_spans_cover_each_token_text(bpe):
    ids = bpe(TEXTS, context_length=24)
    spans = clip_bpe_spans(bpe, TEXTS, 24)
    for text, row, span in zip(TEXTS, ids, spans, strict=True):
        real = int((row != 0).sum())
        assert tuple(span[0]) == (0, 0) and tuple(span[real - 1]) == (0, 0)  # start, end tokens
        assert not span[real:].any()  # padding
        for token, (start, stop) in zip(row[1 : real - 1], span[1 : real - 1], strict=True):
            piece = bpe.decode([int(token)]).strip()  # the token's text, lower case
            assert text[start:stop].lower() == piece, (text, piece)
    # the HTML entity: "&amp;" is one "&" token, found in the original text as the "&" of it
    third = [TEXTS[2][a:b] for a, b in spans[2] if b > a]
    assert third == ["Tom", "&", "Jerry", "are", "HERE"]


def test_bpe_spans_follow_open_clips_truncation(bpe):
    ids = bpe(TEXTS[:1], context_length=4)  # start, 2 tokens, end
    spans = clip_bpe_spans(bpe, TEXTS[:1], 4)
    assert ids[0, -1] == bpe.eot_token_id
    assert [TEXTS[0][a:b] for a, b in spans[0]] == ["", "A", "Doughnut", ""]


def test_wordpiece_spans_match_the_tokens(wordpiece):
    spans = hf_spans(wordpiece, TEXTS[:2], 16)
    ids = wordpiece(TEXTS[:2], padding="max_length", max_length=16)["input_ids"]
    first = [
        (wordpiece.convert_ids_to_tokens(t), TEXTS[0][a:b])
        for t, (a, b) in zip(ids[0], spans[0], strict=True)
        if t
    ]
    assert first == [
        ("[CLS]", ""), ("a", "A"), ("dough", "Dough"), ("##nut", "nut"), ("on", "on"),
        ("a", "a"), ("skate", "skate"), ("##board", "board"), ("'", "'"), ("s", "s"),
        ("edge", "edge"), ("!", "!"), ("[SEP]", ""),
    ]  # fmt: skip
    assert spans.dtype == np.int32 and spans.shape == (2, 16, 2)


def test_one_pass_gives_the_same_ids_as_tokenize():
    from extract.encoders.packaged import MiniLMEncoder

    minilm = MiniLMEncoder(max_length=16)
    ids, lengths, spans = minilm.tokenize_with_spans(TEXTS)
    reference_ids, reference_lengths = minilm.tokenize(TEXTS)
    assert torch.equal(ids, reference_ids) and torch.equal(lengths, reference_lengths)
    assert np.array_equal(spans, minilm.token_spans(TEXTS))


def test_cleaning_maps_back_to_the_original_characters():
    assert cleaned_to_original("a b", "A \t b") == [0, None, 4]
    mapped = cleaned_to_original("tom & jerry", "Tom &amp; Jerry")  # falls back to difflib
    assert [mapped[i] for i in (0, 4, 6)] == [0, 4, 10]


def test_a_character_that_grows_when_lower_cased_shifts_nothing(bpe):
    text = "İstanbul is big"  # "İ".lower() is two characters
    spans = clip_bpe_spans(bpe, [text], 16)[0]
    real = [(int(a), int(b)) for a, b in spans if b > a]
    assert [text[a:b] for a, b in real[-2:]] == ["is", "big"]
    first = real[:-2]  # the pieces of "İstanbul" (its "İ" may be more than one) lie within it
    assert min(a for a, _ in first) == 0 and max(b for _, b in first) == 8


def test_open_clip_tokenizers_without_spans_are_told_apart(wordpiece):
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    from extract.encoders.spans import openclip_gives_spans, openclip_spans

    assert openclip_gives_spans(SimpleTokenizer())
    assert not openclip_gives_spans(SimpleTokenizer(reduction_mask="simple"))
    clipa = HFTokenizer(str(minilm_path()), strip_sep_token=True)  # as the CLIPA configs set
    assert openclip_gives_spans(clipa)
    spans = openclip_spans(clipa, ["a Red cube"], 8)[0]
    ids = clipa(["a Red cube"], context_length=8)[0]
    assert [("a Red cube"[a:b], int(i)) for (a, b), i in zip(spans, ids, strict=True)][:5] == [
        ("", 101), ("a", 1037), ("Red", 2417), ("cube", 14291), ("", 0),
    ]  # fmt: skip
