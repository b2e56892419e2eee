"""Text targets for a student whose tokenizer is not the teacher's: span overlap."""

import numpy as np
import open_clip
import torch

from extract.encoders.spans import clip_bpe_spans, hf_spans
from extract.store import CacheReader
from tests.train.tiny_cache import build
from train.align import aligned_states, overlap_matrix
from train.text_inputs import StudentTokens, TeacherTokens, text_reader


def test_bpe_teacher_and_wordpiece_student_overlap(wordpiece):
    text = "A doughnut on skateboards"
    teacher = clip_bpe_spans(open_clip.get_tokenizer("ViT-B-32"), [text], 8)[0]
    student = hf_spans(wordpiece, [text], 10)[0]
    # teacher (BPE):      <sot> a doughnut on skate boards <eot> <pad>
    # student (WordPiece): [CLS] a dough ##nut on skate ##boards [SEP] <pad> <pad>
    assert [text[a:b] for a, b in teacher] == ["", "A", "doughnut", "on", "skate", "boards", "", ""]
    assert [text[a:b] for a, b in student][:8] == [
        "", "A", "dough", "nut", "on", "skate", "boards", "",
    ]  # fmt: skip
    expected = np.zeros((10, 8), dtype=bool)
    for s, t in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 5)]:
        expected[s, t] = True
    assert (overlap_matrix(student, teacher) == expected).all()


def test_a_student_token_gets_the_mean_of_the_teacher_tokens_it_overlaps():
    student = np.array([[0, 0], [0, 7], [8, 10]])  # [CLS], "doughnut"-ish, "on"
    teacher = np.array([[0, 0], [0, 4], [4, 7], [8, 10], [0, 0]])
    states = np.array([[9.0, 9.0], [1.0, 2.0], [3.0, 6.0], [5.0, 5.0], [7.0, 7.0]])
    targets, valid = aligned_states(student, teacher, states)
    assert valid.tolist() == [False, True, True]  # the special token has no target
    assert targets.tolist() == [[0.0, 0.0], [2.0, 4.0], [5.0, 5.0]]


def test_the_same_tokenizer_gives_the_teacher_states_bit_for_bit(wordpiece):
    texts = ["what colour is the small lime ring ?", "a doughnut"]
    spans = hf_spans(wordpiece, texts, 16)
    rng = np.random.default_rng(0)
    states = rng.standard_normal((2, 16, 384)).astype(np.float16).astype(np.float32)
    lengths = wordpiece(texts, padding="max_length", max_length=16)["attention_mask"]
    for row in range(2):
        targets, valid = aligned_states(spans[row], spans[row], states[row])
        words = np.array(lengths[row], dtype=bool)
        words[0] = False  # [CLS]
        words[int(np.sum(lengths[row])) - 1] = False  # [SEP]
        assert (valid == words).all()
        assert np.array_equal(targets[valid], states[row][valid])  # exact, not close


def test_text_reader_uses_the_cached_ids_when_the_tokenizers_agree(tmp_path, wordpiece):
    cache_dir = build(tmp_path / "minilm", tokenizer=wordpiece)
    reader = text_reader(wordpiece, 512, CacheReader(cache_dir), "train")
    assert (
        isinstance(reader, TeacherTokens) and "gives exactly the cached ids" in reader.description
    )
    # the cached targets at the same positions, exactly as the own student gets them
    samples = list(CacheReader(cache_dir).split("train", ["txt_tok", "token_ids", "token_len"]))[:3]
    gold = torch.zeros(3, 1, dtype=torch.long)
    targets, valid = reader.token_targets(samples, gold, reader.inputs(samples))
    assert torch.equal(targets, torch.from_numpy(np.stack([s["txt_tok"] for s in samples]))[:, :1])
    # [CLS] and [SEP] get no target, as with the student's own tokenization: "red" alone does
    assert valid[:, 0, :3].tolist() == [[False, True, False]] * 3
    # a teacher with another vocabulary: the student tokenizes the stored texts itself
    other = build(tmp_path / "other")
    assert isinstance(text_reader(wordpiece, 512, CacheReader(other), "train"), StudentTokens)
    # ... and so does a student whose positions are fewer than the cached tokens
    assert isinstance(text_reader(wordpiece, 4, CacheReader(cache_dir), "train"), StudentTokens)
    # ... and a cache whose teacher cut the texts: through the cached ids the student would
    # never read their ends
    cut = build(tmp_path / "cut", tokenizer=wordpiece, text_suffix=" is a small round thing")
    assert isinstance(text_reader(wordpiece, 512, CacheReader(cut), "train"), StudentTokens)


def test_student_tokens_align_the_cached_targets(tmp_path, wordpiece):
    cache_dir = build(tmp_path / "cache")  # fake ids: [CLS]=1 <word> [SEP]=2, word spans stored
    reader = StudentTokens(wordpiece, 40)
    samples = list(CacheReader(cache_dir).split("train", ["txt_tok", "token_spans"]))[:4]
    inputs = reader.inputs(samples)
    assert inputs["token_ids"].shape == (4, 1, 3) and inputs["token_len"].tolist() == [[3]] * 4
    gold = torch.zeros(4, 1, dtype=torch.long)
    targets, valid = reader.token_targets(samples, gold, inputs)
    assert valid[:, 0].tolist() == [[False, True, False]] * 4  # only the colour word
    for row, sample in enumerate(samples):  # "red" is one WordPiece, one teacher token
        assert torch.equal(targets[row, 0, 1], torch.from_numpy(sample["txt_tok"][0, 1]))
