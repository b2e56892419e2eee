"""The instance weights of MAD on hand-built features with exactly computable values."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tests.train.tiny_cache import build
from train import confidence as conf
from train.tasks import Group, TaskSpec
from train.trainer import TrainConfig, Trainer

RED, GREEN, BLUE, YELLOW = np.eye(4)  # four answers' text embeddings, already centred and unit
NO_MEANS = {"img_emb": np.zeros(2), "txt_emb": np.zeros(4)}


def choice_task(groups: int = 1, choices: int = 3) -> TaskSpec:
    spans = [Group(f"g{i}", i * choices, (i + 1) * choices, f"label{i}") for i in range(groups)]
    return TaskSpec("mc", "multiple_choice", spans, 1)


def samples(images, candidates) -> list[dict]:
    pairs = zip(images, candidates, strict=True)
    return [{"img_emb": np.asarray(i), "txt_emb": np.asarray(c)} for i, c in pairs]


def test_knn_weights_is_the_share_of_the_nearest_rows_with_the_label():
    features = np.array([[1, 0], [0.8, 0.6], [0, 1], [-0.6, 0.8]])
    labels = ["x", "x", "y", "x"]
    assert conf.knn_weights(features, labels, neighbours=1).tolist() == [1, 1, 0, 0]
    # row 0: rows 1 (0.8) and 2 (0); row 1: 0 and 2; row 2: 3 and 1; row 3: 2 and 1
    assert conf.knn_weights(features, labels, neighbours=2).tolist() == [0.5, 0.5, 0, 0.5]
    assert conf.knn_weights(features[:1], labels[:1]).tolist() == [1]


def test_classification_and_vqa_keep_label_agreement():
    snli = TaskSpec("snli_ve", "classification", [Group("hyp", 0, 1, "label")], 3)
    rows = samples([[1, 0], [1, 0], [0, 1]], [[RED], [RED + 0.1 * GREEN], [BLUE]])
    metas = [{"label": 0}, {"label": 0}, {"label": 2}]
    weights = conf.knn_confidence(rows, snli, [[0]] * 3, NO_MEANS, metas)
    assert weights.tolist() == [0.5, 0.5, 0]  # k = 2 of 3: the other two rows
    features = conf.joint_features(rows, [[0]] * 3, NO_MEANS)
    assert np.allclose(np.linalg.norm(features, axis=1), 1)
    vqa = TaskSpec("vqa", "soft_score", [Group("q", 0, 1, "targets")], 3)
    assert conf.knn_label(vqa, {"targets": {"2": 0.6, "1": 1.0}}) == "1"
    assert conf.knn_label(vqa, {"targets": {"2": 1.0, "1": 1.0}}) == "2"  # a tie: the last
    assert conf.knn_label(vqa, {"targets": {}}) == "none"


def test_each_neighbour_votes_for_the_candidate_most_like_its_gold_text():
    voters = np.stack([RED, (GREEN + BLUE) / np.sqrt(2)])[None]  # the second: a tie
    candidates = np.stack([RED, GREEN, BLUE])[None]
    assert conf.gold_share(candidates, voters, np.array([0])).tolist() == [0.5]
    assert conf.gold_share(candidates, voters, np.array([2])).tolist() == [0.25]


def test_choice_vote_weights_on_hand_built_features():
    # images: 0 and 1 alike, 2 and 3 alike, so each one's nearest (k = 1) is its pair
    images = [[1, 0], [1, 0], [0, 1], [0, 1]]
    candidates = [[RED, GREEN, BLUE], [BLUE, RED, YELLOW], [GREEN, YELLOW, RED], [BLUE, GREEN, RED]]
    gold = [[0], [1], [0], [2]]  # red, red, green, red
    rows = samples(images, candidates)
    weights = conf.choice_vote_weights(rows, choice_task(), gold, NO_MEANS, neighbours=1)
    # 0 <- 1's red: red; 1 <- 0's red: red; 2 <- 3's red: not its green; 3 <- 2's green: not red
    assert weights.tolist() == [1, 1, 0, 0]
    assert conf.choice_vote_weights(rows[:1], choice_task(), gold[:1], NO_MEANS).tolist() == [1]


def test_choice_vote_weights_average_the_groups():
    images = [[1, 0], [1, 0]]
    candidates = [[RED, GREEN, RED, GREEN], [GREEN, RED, RED, GREEN]]
    gold = [[0, 2], [1, 3]]  # Q->A: both red; QA->R: red, then green
    task = choice_task(groups=2, choices=2)
    weights = conf.choice_vote_weights(samples(images, candidates), task, gold, NO_MEANS)
    assert weights.tolist() == [0.5, 0.5]


def test_a_gold_answer_like_the_neighbours_gold_answers_weighs_more():
    rng = np.random.default_rng(0)
    noisy = lambda text: text + 0.2 * rng.standard_normal(4)  # noqa: E731
    candidates = [[noisy(RED), noisy(GREEN), noisy(BLUE)] for _ in range(8)]
    gold = [[0]] * 6 + [[0], [2]]  # the neighbours' gold answers are red; then red, and blue
    rows = samples(rng.standard_normal((8, 2)) * 0.1 + [1, 0], candidates)
    weights = conf.choice_vote_weights(rows, choice_task(), gold, NO_MEANS, neighbours=5)
    assert weights[6] > weights[7]
    assert weights[6] == 1 and weights[7] < 0.5


def test_choice_weights_do_not_depend_on_the_candidate_order(monkeypatch):
    rng = np.random.default_rng(1)
    count, groups, choices = 40, 2, 4
    answers = rng.standard_normal((6, 8))  # texts drawn from a few answers, plus noise
    picks = rng.integers(0, len(answers), (count, groups * choices))
    texts = answers[picks] + 0.3 * rng.standard_normal((count, groups * choices, 8))
    images = rng.standard_normal((count, 5))
    gold = rng.integers(0, choices, (count, groups)) + np.arange(groups) * choices
    means = {"img_emb": images.mean(0), "txt_emb": texts.mean((0, 1))}
    task = choice_task(groups, choices)
    weights = conf.choice_vote_weights(samples(images, texts), task, gold.tolist(), means)
    assert len(set(weights.tolist())) > 3  # not a constant
    shuffled, moved = texts.copy(), gold.copy()
    for row in range(count):
        for group in range(groups):
            start = group * choices
            order = rng.permutation(choices)  # new position p holds old candidate order[p]
            shuffled[row, start : start + choices] = texts[row, start + order]
            moved[row, group] = start + int(np.flatnonzero(order == gold[row, group] - start)[0])
    again = conf.choice_vote_weights(samples(images, shuffled), task, moved.tolist(), means)
    np.testing.assert_allclose(again, weights, atol=1e-6)
    monkeypatch.setattr(conf, "VOTE_BLOCK", 7)  # votes counted in blocks: the same weights
    blocked = conf.choice_vote_weights(samples(images, texts), task, gold.tolist(), means)
    np.testing.assert_array_equal(blocked, weights)


def test_zero_shot_weights_are_the_gold_softmax_mass_averaged_over_groups():
    scores = np.array([0, np.log(3), 0, 0, 0, 0, 0, 0])  # Q->A: 3/6 at 1; QA->R: uniform
    weights = conf.zero_shot_weights([{"zeroshot": scores}], choice_task(2, 4), [[1, 6]])
    assert weights.tolist() == [pytest.approx((0.5 + 0.25) / 2)]


def test_resolve_confidence_picks_and_refuses():
    clip = SimpleNamespace(fields={"zeroshot": None}, cache_dir="shards/clip")
    unaligned = SimpleNamespace(fields={}, cache_dir="shards/minilm")
    vcr, snli = choice_task(), TaskSpec("snli_ve", "classification", [], 3)
    assert conf.resolve_confidence("auto", clip, vcr) == "zeroshot"
    assert conf.resolve_confidence("auto", unaligned, vcr) == "knn"
    assert conf.resolve_confidence("auto", clip, snli) == "knn"
    assert conf.resolve_confidence("none", unaligned, vcr) == "none"
    with pytest.raises(ValueError, match="shards/minilm has none.*--confidence knn"):
        conf.resolve_confidence("zeroshot", unaligned, vcr)
    with pytest.raises(ValueError, match="snli_ve task has one text per sample"):
        conf.resolve_confidence("zeroshot", clip, snli)


def test_the_trainer_weighs_a_vcr_cache_by_the_vote(tmp_path):
    cache = build(tmp_path / "vcr", "vcr", counts={"train": 12, "val": 2})
    trainer = Trainer(TrainConfig(cache=cache, out=tmp_path / "run", device="cpu"))
    assert trainer.confidence == "knn"
    keys, metas, _ = trainer.select_train_keys()
    weights = trainer.instance_weights(keys, metas)
    assert sorted(weights) == sorted(keys)
    assert all(0 <= w <= 1 for w in weights.values())
