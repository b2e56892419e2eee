"""The official VQA answer processing and accuracy, rule by rule, with hand-computed values."""

import ast
import sys

import pytest

from extract.store.vqa_answers import (
    CONTRACTIONS,
    normalize_answer,
    process_digit_article,
    process_punctuation,
    soft_score,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("100,978 people", "100978 people"),  # digit-comma-digit: every mark is deleted
        ("yes, i think", "yes i think"),  # ", " occurs: the comma is deleted
        ("t-shirt", "t shirt"),  # no space next to it: replaced by a space
        ("hi - there-you", "hi  thereyou"),  # " -" occurs once: every "-" is deleted
        ("1,5-6", "156"),  # digit-comma-digit deletes the dash too
        ("(red)", " red "),
        ("a/b;c", "a b c"),
        ("don't: no", "don't: no"),  # apostrophe and colon are not punctuation here
        ("Two dogs.", "Two dogs"),  # period not before a digit: deleted
        ("3.5", "3.5"),  # period before a digit: kept
        ("a.b...c", "abc"),
        ("٣.٥", "٣٥"),  # \d is ASCII only: the Arabic-Indic digit does not protect the period
        ("٣,٥", "٣ ٥"),  # ... nor makes a digit-comma-digit pattern
        ("." * 40, "." * 8),  # at most 32 periods are deleted
    ],
)
def test_punctuation(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Two dogs", "2 dogs"),
        (
            "none Zero one TWO three four five six seven eight nine ten eleven",
            "0 0 1 2 3 4 5 6 7 8 9 10 eleven",
        ),
        ("The red car", "red car"),
        ("a an the apple", "apple"),
        ("  many   spaces ", "many spaces"),
        ("dont", "don't"),
        ("whats that", "what's that"),
        ("Youre", "you're"),  # lowercased first, then looked up
        ("Im Ive", "im ive"),  # capitalised keys of the table never match
        ("somebody'd", "somebodyd"),  # the official table maps this one backwards
        ("dont-care", "dont-care"),  # whole tokens only
    ],
)
def test_digit_article(text, expected):
    assert process_digit_article(text) == expected


def test_normalize_answer_chains_the_rules():
    assert normalize_answer("Two dogs.") == "2 dogs"
    assert normalize_answer("100,978 people") == "100978 people"
    assert normalize_answer("t-shirt") == "t shirt"
    assert normalize_answer(" The\tT-Shirt.\n") == "t shirt"
    assert normalize_answer("Dont!") == "don't"


def test_contractions_table_is_the_official_one():
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["cant"] == "can't" and CONTRACTIONS["yall'd've"] == "y'all'd've"
    # every entry only moves apostrophes ("twas" -> "'twas", "somebody'd" -> "somebodyd")
    assert all(k.replace("'", "") == v.replace("'", "") for k, v in CONTRACTIONS.items())


def answers_with(k: int, match: str = "cat") -> list[str]:
    return [match] * k + [f"other{i}" for i in range(10 - k)]


@pytest.mark.parametrize(
    "k, mean, rounded",
    [
        (0, 0.0, 0.0),
        # 1 match: the 9 sets that leave out another answer contain it (1/3), the other not (0)
        (1, (9 * (1 / 3) + 1 * 0) / 10, 0.3),
        # 2: 8 sets hold both (2/3), the 2 that leave one of them out hold one (1/3)
        (2, (8 * (2 / 3) + 2 * (1 / 3)) / 10, 0.6),
        (3, (7 * 1 + 3 * (2 / 3)) / 10, 0.9),
        (4, (6 * 1 + 4 * 1) / 10, 1.0),
        (10, 1.0, 1.0),
    ],
)
def test_leave_one_out_accuracy(k, mean, rounded):
    assert vqa_accuracy("cat", answers_with(k)) == pytest.approx(mean, abs=1e-15)
    assert vqa_accuracy("cat", answers_with(k)) == pytest.approx(rounded, abs=1e-12)


def test_identical_answers_skip_normalization():
    assert vqa_accuracy("yes", ["Yes"] * 10) == 0.0  # not lowercased: all answers identical
    assert vqa_accuracy("Yes", ["Yes"] * 10) == 1.0
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    # one differing answer switches normalization on for all answers and the prediction
    assert vqa_accuracy("2", ["two"] * 9 + ["2"]) == 1.0
    assert vqa_accuracy("yes", ["Yes"] * 9 + ["no"]) == 1.0


def test_prediction_and_answers_are_normalized_alike():
    answers = ["100,978 people"] * 2 + ["t-shirt"] * 3 + ["Two dogs."] + ["other"] * 4
    assert vqa_accuracy("100978 people", answers) == pytest.approx(0.6)
    assert vqa_accuracy("T-Shirt!", answers) == pytest.approx(0.9)
    assert vqa_accuracy("the two dogs", answers) == pytest.approx(0.3)


def test_newlines_and_tabs_always_become_spaces_and_are_stripped():
    # after cleaning all ten answers are "yes": no normalization, exact match
    assert vqa_accuracy(" yes\t", ["yes\n"] * 5 + ["\tyes "] * 5) == 1.0
    assert vqa_accuracy("red\tcar", ["red car"] * 10) == 1.0
    assert vqa_accuracy("Red\ncar", ["red car"] * 10) == 0.0  # still not lowercased


def test_accuracy_needs_answers():
    with pytest.raises(ValueError, match="annotator answers"):
        vqa_accuracy("yes", [])


@pytest.mark.parametrize(
    "count, score", [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (10, 1.0)]
)
def test_soft_score(count, score):
    assert soft_score(count) == score


def test_soft_score_rejects_negative_counts():
    with pytest.raises(ValueError, match=">= 0"):
        soft_score(-1)


def test_imports_only_the_standard_library():
    import extract.store.vqa_answers as module

    tree = ast.parse(open(module.__file__).read())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}
