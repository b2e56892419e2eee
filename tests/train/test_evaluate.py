"""Result files (round trips, errors naming file and line) and ``python -m train.evaluate``."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from click.testing import CliRunner

from train.evaluate import main
from train.results_io import (
    VCR_CSV_HEADER,
    VcrProbs,
    read_snli_ve_gold,
    read_snli_ve_predictions,
    read_vcr_labels,
    read_vcr_leaderboard,
    read_vqa_results,
    vcr_scores_from_csv,
    write_snli_ve_predictions,
    write_vcr_leaderboard,
    write_vqa_results,
)

# ----------------------------------------------------------------------------- small files


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def vqa_files(tmp_path):
    """4 questions: predictions score 1.0, 0.0, 0.9, 0.3."""
    specs = [
        (1, ["yes"] * 10, "yes/no", "is the"),
        (2, ["yes"] * 10, "yes/no", "is the"),
        (3, ["2"] * 3 + ["3"] * 7, "number", "how many"),
        (4, ["red"] + ["blue"] * 9, "other", "what color is the"),
    ]
    questions = [{"question_id": q, "image_id": 10 * q, "question": "?"} for q, *_ in specs]
    annotations = [
        {
            "question_id": q,
            "image_id": 10 * q,
            "answer_type": answer_type,
            "question_type": question_type,
            "multiple_choice_answer": answers[0],
            "answers": [{"answer_id": i + 1, "answer": a} for i, a in enumerate(answers)],
        }
        for q, answers, answer_type, question_type in specs
    ]
    q_path = tmp_path / "v2_OpenEnded_mscoco_val2014_questions.json"
    a_path = tmp_path / "v2_mscoco_val2014_annotations.json"
    q_path.write_text(json.dumps({"task_type": "Open-Ended", "questions": questions}))
    a_path.write_text(json.dumps({"annotations": annotations}))
    return q_path, a_path


def vcr_probs(answer_pred, rationale_pred_by_answer):
    """0.7 on the chosen answer; row i puts 0.7 on the rationale chosen given answer i."""
    answer = [0.1] * 4
    answer[answer_pred] = 0.7
    rationale = [[0.1] * 4 for _ in range(4)]
    for i, j in enumerate(rationale_pred_by_answer):
        rationale[i][j] = 0.7
    return answer, rationale


def vcr_files(tmp_path):
    """3 questions: both right; answer wrong but rationale right given the GOLD answer; neither."""
    val = write_jsonl(
        tmp_path / "val.jsonl",
        [
            {"annot_id": "val-0", "answer_label": 1, "rationale_label": 2, "movie": "m"},
            {"annot_id": "val-1", "answer_label": 0, "rationale_label": 3},
            {"answer_label": 3, "rationale_label": 0},  # no annot_id: "val-2" by convention
        ],
    )
    probs = {
        "val-0": vcr_probs(1, [0, 2, 0, 0]),
        # predicted answer 2 (wrong); given answer 2 it would pick rationale 1, given the gold
        # answer 0 it picks 3 (right): QA->R right, Q->AR wrong
        "val-1": vcr_probs(2, [3, 0, 1, 0]),
        "val-2": vcr_probs(0, [1, 1, 1, 1]),
    }
    csv_path = tmp_path / "predictions.csv"
    write_vcr_leaderboard(csv_path, probs)
    return val, csv_path


def snli_files(tmp_path):
    gold = write_jsonl(
        tmp_path / "snli_ve_dev.jsonl",
        [
            {"pairID": "1.jpg#0r1e", "Flikr30kID": "1.jpg", "gold_label": "entailment"},
            {"pairID": "1.jpg#0r1n", "Flikr30kID": "1.jpg", "gold_label": "neutral"},
            {"pairID": "2.jpg#0r1c", "Flikr30kID": "2.jpg", "gold_label": "contradiction"},
            {"pairID": "2.jpg#1r1n", "Flikr30kID": "2.jpg", "gold_label": "-"},
        ],
    )
    predictions = tmp_path / "predictions.jsonl"
    write_snli_ve_predictions(
        predictions,
        {"1.jpg#0r1e": 0, "1.jpg#0r1n": "contradiction", "2.jpg#0r1c": 2, "2.jpg#1r1n": 1},
    )
    return gold, predictions


# ----------------------------------------------------------------------------- VQA files


def test_vqa_results_round_trip_and_last_entry_wins(tmp_path, caplog):
    path = tmp_path / "results.json"
    write_vqa_results(path, {1: "yes", np.int64(2): "two dogs", 3: "caf\u00e9"})
    assert read_vqa_results(path) == {1: "yes", 2: "two dogs", 3: "caf\u00e9"}
    entries = [{"question_id": 1, "answer": "no"}, {"question_id": 1, "answer": "yes"}]
    path.write_text(json.dumps(entries))
    with caplog.at_level(logging.WARNING):
        assert read_vqa_results(path) == {1: "yes"}
    assert "1 entries repeat a question id" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question_id": 1}', "expected a JSON list"),
        ('[{"question_id": 1, "answer": "a"}, 5]', "entry 1 of the list is not a JSON object"),
        ('[{"question_id": "1", "answer": "a"}]', "entry 0: 'question_id' must be an integer"),
        ('[{"question_id": 1, "answer": 2}]', "entry 0: 'answer' must be a string"),
        ('[{"question_id": 1,\n "answer": }]', r"truncated or not valid JSON at line 2 column 12"),
    ],
)
def test_vqa_results_errors_name_file_and_index(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_vqa_results(path)
    assert str(path) in str(error.value)


# ----------------------------------------------------------------------------- VCR files


def test_vcr_csv_round_trips_exactly(tmp_path):
    rng = np.random.default_rng(0)
    probs = {f"test-{i}": (rng.random(4), rng.random((4, 4))) for i in range(5)}
    probs["test-odd"] = ([1 / 3, 0.1, 1e-300, float(np.float32(0.2))], [[2 / 3] * 4] * 4)
    path = tmp_path / "leaderboard.csv"
    write_vcr_leaderboard(path, probs)
    header = path.read_text().splitlines()[0].split(",")
    assert header[:6] == ["annot_id", "answer_0", "answer_1", "answer_2", "answer_3",
                          "rationale_conditioned_on_a0_0"]  # fmt: skip
    assert header[-1] == "rationale_conditioned_on_a3_3" and tuple(header) == VCR_CSV_HEADER
    read = read_vcr_leaderboard(path)
    assert list(read) == list(probs)
    for key, (answer, rationale) in probs.items():
        assert read[key] == VcrProbs.of(answer, rationale)  # float equality, no tolerance
        assert read[key].rationale[1][2] == float(np.asarray(rationale)[1, 2])


def test_vcr_csv_errors_name_file_and_line(tmp_path):
    path = tmp_path / "leaderboard.csv"
    path.write_text("annot_id,answer_0\nval-0,0.5\n")
    with pytest.raises(ValueError, match=r"leaderboard.csv:1: not the VCR leaderboard header"):
        read_vcr_leaderboard(path)
    row = ",".join(["0.05"] * 20)
    path.write_text(",".join(VCR_CSV_HEADER) + f"\nval-0,{row}\nval-1,{row.replace('5', 'x', 1)}\n")
    with pytest.raises(ValueError, match=r"leaderboard.csv:3: answer_0 = '0.0x' is not a finite"):
        read_vcr_leaderboard(path)
    path.write_text(",".join(VCR_CSV_HEADER) + f"\nval-0,{row}\nval-0,{row}\n")
    with pytest.raises(ValueError, match=r"leaderboard.csv:3: annot_id 'val-0' repeats line 2"):
        read_vcr_leaderboard(path)
    path.write_text(",".join(VCR_CSV_HEADER) + f"\nval-0,{row},0.1\n")
    with pytest.raises(ValueError, match=r"leaderboard.csv:2: 22 columns, expected 21"):
        read_vcr_leaderboard(path)


def test_vcr_scores_from_csv_use_the_gold_answer_for_rationales(tmp_path):
    val, csv_path = vcr_files(tmp_path)
    assert read_vcr_labels(val) == {"val-0": (1, 2), "val-1": (0, 3), "val-2": (3, 0)}
    # Q->A: 1 of 3; QA->R: val-0 and val-1 (rationale row of the gold answer); Q->AR: val-0
    assert vcr_scores_from_csv(csv_path, val) == {
        "q2a": 33.33,
        "qa2r": 66.67,
        "q2ar": 33.33,
        "n": 3,
    }


def test_vcr_labels_are_required(tmp_path):
    test = write_jsonl(tmp_path / "test.jsonl", [{"annot_id": "test-0"}])
    with pytest.raises(ValueError, match=r"test.jsonl:1: no 'answer_label' \(test annotations"):
        read_vcr_labels(test)


# ----------------------------------------------------------------------------- SNLI-VE files


def test_snli_ve_files(tmp_path):
    gold_path, predictions_path = snli_files(tmp_path)
    gold = read_snli_ve_gold(gold_path)
    assert gold.labels == {
        "1.jpg#0r1e": "entailment",
        "1.jpg#0r1n": "neutral",
        "2.jpg#0r1c": "contradiction",
    }
    assert gold.skipped == {"2.jpg#1r1n": "-"}
    assert read_snli_ve_predictions(predictions_path) == {
        "1.jpg#0r1e": "entailment",
        "1.jpg#0r1n": "contradiction",
        "2.jpg#0r1c": "contradiction",
        "2.jpg#1r1n": "neutral",
    }
    predictions_path.write_text('{"pairID": "a", "prediction": 0}\n\n{"pairID": "b"}\n')
    with pytest.raises(ValueError, match=r"predictions.jsonl:3: no 'prediction'"):
        read_snli_ve_predictions(predictions_path)


# ----------------------------------------------------------------------------- the CLI


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_vqa(tmp_path):
    questions, annotations = vqa_files(tmp_path)
    results = tmp_path / "results.json"
    write_vqa_results(results, {1: "yes", 2: "no", 3: "two", 4: "Red"})
    out = tmp_path / "report.json"
    args = ["--questions", questions, "--annotations", annotations, "--results", results]
    result = run_cli("--task", "vqa", *args, "--output", out)
    assert result.exit_code == 0, result.output
    expected = {
        "task": "vqa",
        "overall": 55.0,
        "per_answer_type": {"number": 90.0, "other": 30.0, "yes/no": 50.0},
        "per_question_type": {"how many": 90.0, "is the": 50.0, "what color is the": 30.0},
        "n": 4,
    }
    assert json.loads(result.stdout) == expected
    assert json.loads(out.read_text()) == expected


def test_cli_vqa_errors(tmp_path):
    questions, annotations = vqa_files(tmp_path)
    results = tmp_path / "results.json"
    write_vqa_results(results, {1: "yes", 2: "no", 3: "two"})
    args = ["--annotations", annotations, "--results", results]
    result = run_cli("--task", "vqa", "--questions", questions, *args)
    assert result.exit_code == 1
    assert "1 of the 4 annotated ids have no prediction (first: 4)" in result.output
    result = run_cli("--task", "vqa", *args)
    assert result.exit_code == 2 and "--task vqa needs --questions" in result.output
    data = json.loads(questions.read_text())
    data["questions"][0]["question_id"] = 77
    questions.write_text(json.dumps(data))
    result = run_cli("--task", "vqa", "--questions", questions, *args)
    assert result.exit_code == 1 and "are not the same split" in result.output


def test_cli_vcr(tmp_path):
    val, csv_path = vcr_files(tmp_path)
    result = run_cli("--task", "vcr", "--annotations", val, "--results", csv_path)
    assert result.exit_code == 0, result.output
    expected = {"task": "vcr", "q2a": 33.33, "qa2r": 66.67, "q2ar": 33.33, "n": 3}
    assert json.loads(result.stdout) == expected
    lines = csv_path.read_text().splitlines()
    csv_path.write_text("\n".join(lines[:-1]) + "\n")  # val-2 left out
    result = run_cli("--task", "vcr", "--annotations", val, "--results", csv_path)
    assert result.exit_code == 1
    assert "1 of the 3 annotated ids have no prediction (first: 'val-2')" in result.output
    result = run_cli("--task", "vcr", "--questions", val, "--annotations", val, "--results", val)
    assert result.exit_code == 2 and "--questions is for --task vqa only" in result.output


def test_cli_snli_ve_reports_skipped_lines(tmp_path):
    gold, predictions = snli_files(tmp_path)
    result = run_cli("--task", "snli_ve", "--annotations", gold, "--results", predictions)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "task": "snli_ve",
        "accuracy": 66.67,
        "n": 3,
        "per_label": {
            "entailment": {"accuracy": 100.0, "n": 1},
            "neutral": {"accuracy": 0.0, "n": 1},
            "contradiction": {"accuracy": 100.0, "n": 1},
        },
        "skipped": {"count": 1, "gold_labels": {"-": 1}},
        "ignored_predictions": 1,
    }
    predictions.write_text('{"pairID": "1.jpg#0r1e", "prediction": "maybe"}\n')
    result = run_cli("--task", "snli_ve", "--annotations", gold, "--results", predictions)
    assert result.exit_code == 1
    assert "predictions.jsonl:1: 'maybe' is not an SNLI-VE label" in result.output


def test_cli_help_and_missing_file(tmp_path):
    result = run_cli("--help")
    assert result.exit_code == 0
    for option in ("--task", "--annotations", "--results", "--questions", "--output"):
        assert option in result.output
    result = run_cli("--task", "vcr", "--annotations", tmp_path / "nope.jsonl", "--results", "x")
    assert result.exit_code == 2 and "does not exist" in result.output
