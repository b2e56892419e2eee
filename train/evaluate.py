"""``python -m train.evaluate``: score a result file with a benchmark's official metric.

Reads the annotation files as released (docs/DATASETS.md) and prints the scores as JSON, so any
reported number can be checked again from its result file alone:

    python -m train.evaluate --task vqa --questions Q.json --annotations A.json --results R.json
    python -m train.evaluate --task vcr --annotations vcr1/val.jsonl --results predictions.csv
    python -m train.evaluate --task snli_ve --annotations snli_ve_dev.jsonl --results pred.jsonl
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import click

from extract.store.atomic import write_bytes_atomic
from train.metrics import check_unique, first_ids, id_differences, snli_ve_accuracy, vqa_scores
from train.results_io import (
    read_snli_ve_gold,
    read_snli_ve_predictions,
    read_vqa_annotations,
    read_vqa_questions,
    read_vqa_results,
    vcr_scores_from_csv,
)

log = logging.getLogger(__name__)


def check_vqa_files_agree(
    questions: list[dict], annotations: list[dict], questions_path: Path, annotations_path: Path
) -> None:
    """The questions and annotations files must hold the same questions, on the same images."""
    check_unique([q["question_id"] for q in questions], str(questions_path))
    check_unique([a["question_id"] for a in annotations], str(annotations_path))
    images = {q["question_id"]: q.get("image_id") for q in questions}
    missing, extra = id_differences([a["question_id"] for a in annotations], images)
    if missing or extra:
        raise ValueError(
            f"{questions_path} and {annotations_path} are not the same split: {len(missing)} "
            f"annotated questions are not in the questions file (first: {first_ids(missing)}), "
            f"{len(extra)} questions have no annotation (first: {first_ids(extra)})"
        )
    wrong = [
        a["question_id"]
        for a in annotations
        if a.get("image_id") is not None and images[a["question_id"]] not in (None, a["image_id"])
    ]
    if wrong:
        raise ValueError(
            f"{questions_path} and {annotations_path} disagree on the image of {len(wrong)} "
            f"questions (first: {first_ids(wrong)})"
        )


def evaluate_vqa(annotations: Path, results: Path, questions: Path) -> dict:
    """Official VQA v2 accuracy: overall, per answer type and per question type."""
    gold = read_vqa_annotations(annotations)
    check_vqa_files_agree(read_vqa_questions(questions), gold, questions, annotations)
    return {"task": "vqa", **vqa_scores(read_vqa_results(results), gold)}


def evaluate_vcr(annotations: Path, results: Path, questions: Path | None = None) -> dict:
    """Q->A, QA->R (rationale given the gold answer) and Q->AR of a leaderboard CSV."""
    return {"task": "vcr", **vcr_scores_from_csv(results, annotations)}


def evaluate_snli_ve(annotations: Path, results: Path, questions: Path | None = None) -> dict:
    """3-way accuracy over the pairs with a gold label; the pairs left out are counted."""
    gold = read_snli_ve_gold(annotations)
    predictions = read_snli_ve_predictions(results)
    ignored = [key for key in predictions if key in gold.skipped]
    for key in ignored:
        del predictions[key]
    if gold.skipped:
        log.warning(
            "%s: %d pairs have no 3-way gold label and are not scored",
            annotations,
            len(gold.skipped),
        )
    scores = snli_ve_accuracy(predictions, gold.labels)
    skipped = {"count": len(gold.skipped), "gold_labels": dict(Counter(gold.skipped.values()))}
    return {"task": "snli_ve", **scores, "skipped": skipped, "ignored_predictions": len(ignored)}


EVALUATORS: dict[str, Callable[..., dict]] = {
    "vqa": evaluate_vqa,
    "vcr": evaluate_vcr,
    "snli_ve": evaluate_snli_ve,
}

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--task",
    required=True,
    type=click.Choice(list(EVALUATORS)),
    help="Benchmark whose official metric to compute: vqa (VQA v2 accuracy, overall and per "
    "answer/question type), vcr (Q->A, QA->R, Q->AR), snli_ve (3-way accuracy, per label).",
)
@click.option(
    "--annotations",
    required=True,
    type=FILE,
    help="Gold labels as released. vqa: v2_mscoco_val2014_annotations.json; vcr: vcr1/val.jsonl "
    "(answer_label, rationale_label); snli_ve: snli_ve_dev.jsonl or snli_ve_test.jsonl "
    "(gold_label; lines without one of the 3 labels, e.g. '-', are skipped and counted).",
)
@click.option(
    "--results",
    required=True,
    type=FILE,
    help='Predictions. vqa: JSON list of {"question_id": int, "answer": str} for every question '
    "(a repeated id keeps its last entry); vcr: leaderboard CSV with columns annot_id, "
    "answer_0..answer_3, rationale_conditioned_on_a{i}_{j}; snli_ve: jsonl with one "
    '{"pairID": ..., "prediction": "entailment"|"neutral"|"contradiction"} per line.',
)
@click.option(
    "--questions",
    type=FILE,
    default=None,
    help="vqa only, and required there: the matching v2_OpenEnded_mscoco_*_questions.json; it "
    "must hold the same question ids (and images) as --annotations.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the JSON report to this file (atomically).",
)
def main(
    task: str, annotations: Path, results: Path, questions: Path | None, output: Path | None
) -> None:
    """Score a result file with the official metric of a benchmark and print the scores as JSON.

    Percentages have 2 decimals, rounded like the official VQA script (Python 2 round: ties away
    from zero on the float's exact value).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if task == "vqa" and questions is None:
        raise click.UsageError("--task vqa needs --questions (the questions file of the split)")
    if task != "vqa" and questions is not None:
        raise click.UsageError(f"--questions is for --task vqa only, not --task {task}")
    try:
        report = EVALUATORS[task](annotations, results, questions)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from error
    text = json.dumps(report, indent=2, ensure_ascii=False)
    click.echo(text)
    if output is not None:
        write_bytes_atomic(output, (text + "\n").encode("utf-8"))


if __name__ == "__main__":
    main()
