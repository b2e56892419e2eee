"""Official metrics against hand-computed values: every VQA answer rule, rounding, VCR, SNLI-VE."""

from __future__ import annotations

import pytest

from extract.store.vqa_answers import normalize_answer, process_punctuation, vqa_accuracy
from train.metrics import (
    VcrPrediction,
    round_half_up,
    snli_ve_accuracy,
    snli_ve_label,
    vcr_scores,
    vqa_scores,
)

# ----------------------------------------------------------------------------- VQA: one question


def test_identical_answers_skip_normalisation():
    # all ten answers identical: the official script compares the raw (whitespace-cleaned) texts
    assert vqa_accuracy("Two", ["two"] * 10) == 0.0
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    assert vqa_accuracy("two", ["two"] * 10) == 1.0
    # identical is judged after whitespace cleaning, which always applies
    assert vqa_accuracy("Two", ["two"] * 9 + ["two\t"]) == 0.0
    assert vqa_accuracy(" two\n", ["two"] * 10) == 1.0
    # one differing answer switches normalisation on, for the answers and the prediction
    assert vqa_accuracy("Two", ["two"] * 9 + ["2"]) == 1.0


def test_leave_one_out_average():
    """k annotators gave the prediction: each of the 10 answers is left out in turn."""
    by_hand = {
        0: 0.0,  # all ten answers "no"
        1: (9 * (1 / 3) + 1 * 0) / 10,  # the 9 "no" left out: 1 match; the "yes": 0
        2: (8 * (2 / 3) + 2 * (1 / 3)) / 10,
        3: (7 * 1 + 3 * (2 / 3)) / 10,  # min(3/3, 1) = 1 once 3 others match
        4: (6 * 1 + 4 * 1) / 10,
    }
    assert list(by_hand.values()) == [0.0, 0.3, 0.6, 0.9, 1.0]
    for k, expected in by_hand.items():
        assert vqa_accuracy("yes", ["yes"] * k + ["no"] * (10 - k)) == expected, k
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("t-shirt", "t shirt"),  # no space next to the mark: replaced by a space
        ("red,white", "red white"),
        ("yes, it is", "yes it is"),  # ", " occurs: the comma is deleted
        ("left- and right-handed", "left and righthanded"),  # decided once per mark, text-wide
        ("100,978 people", "100978 people"),  # digit-comma-digit: every mark is deleted
        ("1,000-2,000", "10002000"),
        ("don't", "don't"),  # the apostrophe is not a mark
        ("10:30", "10:30"),  # nor the colon
        ("Two dogs.", "Two dogs"),  # a period not followed by a digit is deleted
        ("2.5", "2.5"),
        (".5", ".5"),
        ("3.", "3"),  # the lookbehind is a typo in the official regex: a digit before is ignored
        ("a.m.", "am"),
        ("1.\u0663", "1\u0663"),  # \d is ASCII only: an Arabic-Indic digit does not keep it
        ("." * 40, "." * 8),  # at most 32 periods deleted (re.UNICODE passed as the count)
    ],
)
def test_punctuation(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two dogs.", "2 dogs"),
        ("none", "0"),
        ("zero", "0"),
        ("Three", "3"),  # lowercased before the number map
        ("ten", "10"),
        ("eleven", "eleven"),  # only none/zero..ten
        ("the dog", "dog"),
        ("A cat", "cat"),
        ("an", ""),
        ("theater", "theater"),  # whole tokens only
        ("dont", "don't"),
        ("Whats up", "what's up"),
        ("isnt it", "isn't it"),
        ("Im", "im"),  # capitalised table keys never match after lowercasing
        ("red\nwhite", "red white"),
        ("\tyes \n", "yes"),
    ],
)
def test_digits_articles_contractions_whitespace(text, expected):
    assert normalize_answer(text) == expected


def test_rules_change_the_accuracy():
    # the digit-comma-digit rule makes "1,000" and "1000" one answer
    assert vqa_accuracy("1000", ["1,000"] * 3 + ["many"] * 7) == 0.9
    # a period deleted: "dog." counts for "dog" (1 annotator -> 0.3)
    assert vqa_accuracy("dog.", ["dog"] + ["cat"] * 9) == 0.3
    assert vqa_accuracy("t shirt", ["t-shirt"] * 5 + ["shirt"] * 5) == 1.0
    assert vqa_accuracy("tshirt", ["t-shirt"] * 5 + ["shirt"] * 5) == 0.0
    assert vqa_accuracy("dont", ["don't"] * 2 + ["no"] * 8) == 0.6
    assert vqa_accuracy("the two", ["2"] * 4 + ["3"] * 6) == 1.0
    assert vqa_accuracy("yes\n", ["yes"] * 2 + ["no"] * 8) == 0.6


# ----------------------------------------------------------------------------- VQA: a split


def vqa_annotation(question_id, answers, answer_type="other", question_type="what is"):
    return {
        "question_id": question_id,
        "image_id": 1000 + question_id,
        "question_type": question_type,
        "answer_type": answer_type,
        "multiple_choice_answer": answers[0],
        "answers": [
            {"answer_id": i + 1, "answer": a, "answer_confidence": "yes"}
            for i, a in enumerate(answers)
        ],
    }


def four_questions():
    annotations = [
        vqa_annotation(1, ["yes"] * 10, "yes/no", "is the"),
        vqa_annotation(2, ["yes"] * 10, "yes/no", "is the"),
        vqa_annotation(3, ["2"] * 3 + ["3"] * 7, "number", "how many"),
        vqa_annotation(4, ["red"] + ["blue"] * 9, "other", "what color is the"),
    ]
    predictions = {1: "yes", 2: "no", 3: "two", 4: "red"}  # 1.0, 0.0, 0.9, 0.3
    return predictions, annotations


def test_vqa_scores_overall_and_per_type():
    predictions, annotations = four_questions()
    assert vqa_scores(predictions, annotations) == {
        "overall": 55.0,  # 100 * (1 + 0 + 0.9 + 0.3) / 4
        "per_answer_type": {"number": 90.0, "other": 30.0, "yes/no": 50.0},
        "per_question_type": {"how many": 90.0, "is the": 50.0, "what color is the": 30.0},
        "n": 4,
    }


def test_round_half_up_is_python2_round():
    # exact binary ties go away from zero; Python 3's round goes to even
    assert round_half_up(0.125) == 0.13 and round(0.125, 2) == 0.12
    assert round_half_up(12.125) == 12.13 and round(12.125, 2) == 12.12
    assert round_half_up(-0.125) == -0.13
    assert round_half_up(0.375) == 0.38
    # not ties: 2.675 and 1.005 are stored just below, Python 2 rounds them down too
    assert round_half_up(2.675) == 2.67
    assert round_half_up(1.005) == 1.0
    assert round_half_up(54.99999999999999) == 55.0


def test_vqa_overall_rounds_an_exact_tie_up():
    """1 right of 32: 100 * 1 / 32 = 3.125 exactly; Python 2 gives 3.13, Python 3's round 3.12."""
    annotations = [vqa_annotation(q, ["yes"] * 10, "yes/no") for q in range(32)]
    predictions = {q: ("yes" if q == 0 else "no") for q in range(32)}
    assert 100 * 1.0 / 32 == 3.125 and round(3.125, 2) == 3.12
    scores = vqa_scores(predictions, annotations)
    assert scores["overall"] == 3.13
    assert scores["per_answer_type"] == {"yes/no": 3.13}


def test_vqa_results_must_cover_exactly_the_annotations():
    predictions, annotations = four_questions()
    missing = {1: "yes", 2: "no"}
    with pytest.raises(
        ValueError, match=r"2 of the 4 annotated ids have no prediction \(first: 3, 4\)"
    ):
        vqa_scores(missing, annotations)
    extra = {**predictions, 99: "yes", 98: "no"}
    with pytest.raises(
        ValueError, match=r"2 predicted ids are not in the annotations \(first: 99, 98"
    ):
        vqa_scores(extra, annotations)


def test_vqa_annotations_must_be_well_formed():
    predictions, annotations = four_questions()
    with pytest.raises(ValueError, match="repeated"):
        vqa_scores(predictions, annotations + [annotations[0]])
    del annotations[2]["answer_type"]
    with pytest.raises(ValueError, match="annotation 2: no 'answer_type'"):
        vqa_scores(predictions, annotations)
    with pytest.raises(ValueError, match="not a string"):
        vqa_scores({**predictions, 1: 7}, four_questions()[1])


# ----------------------------------------------------------------------------- VCR


def test_vcr_q2ar_needs_both_right():
    rows = [
        VcrPrediction("val-0", 0, 0, 1, 1),  # both right
        VcrPrediction("val-1", 0, 0, 2, 1),  # answer right, rationale wrong
        VcrPrediction("val-2", 1, 0, 3, 3),  # answer wrong, rationale right
        VcrPrediction("val-3", 2, 0, 0, 1),  # both wrong
    ]
    assert vcr_scores(rows) == {"q2a": 50.0, "qa2r": 50.0, "q2ar": 25.0, "n": 4}
    assert vcr_scores(rows[:3]) == {"q2a": 66.67, "qa2r": 66.67, "q2ar": 33.33, "n": 3}


def test_vcr_rejects_bad_rows():
    with pytest.raises(ValueError, match="answer_pred must be a choice index 0..3"):
        VcrPrediction("val-0", 4, 0, 0, 0)
    with pytest.raises(ValueError, match="rationale_label"):
        VcrPrediction("val-0", 0, 0, 0, True)
    row = VcrPrediction("val-0", 0, 0, 0, 0)
    with pytest.raises(ValueError, match="repeated"):
        vcr_scores([row, row])
    with pytest.raises(ValueError, match="0 items"):
        vcr_scores([])


# ----------------------------------------------------------------------------- SNLI-VE


def test_snli_ve_accuracy_and_per_label():
    gold = {
        "p1": "entailment",
        "p2": "entailment",
        "p3": "neutral",
        "p4": "contradiction",
        "p5": "contradiction",
        "p6": "contradiction",
    }
    predictions = {"p1": 0, "p2": "neutral", "p3": 1, "p4": "contradiction", "p5": 2, "p6": 0}
    assert snli_ve_accuracy(predictions, gold) == {
        "accuracy": 66.67,  # 4 / 6
        "n": 6,
        "per_label": {
            "entailment": {"accuracy": 50.0, "n": 2},
            "neutral": {"accuracy": 100.0, "n": 1},
            "contradiction": {"accuracy": 66.67, "n": 3},
        },
    }


def test_snli_ve_labels_and_coverage():
    assert [snli_ve_label(i) for i in range(3)] == ["entailment", "neutral", "contradiction"]
    for bad in ("maybe", 3, True, "Entailment", None):
        with pytest.raises(ValueError, match="not an SNLI-VE label"):
            snli_ve_label(bad)
    with pytest.raises(ValueError, match="prediction of 'p1'"):
        snli_ve_accuracy({"p1": "maybe"}, {"p1": "neutral"})
    with pytest.raises(ValueError, match=r"1 of the 2 annotated ids have no prediction"):
        snli_ve_accuracy({"p1": "neutral"}, {"p1": "neutral", "p2": "neutral"})
