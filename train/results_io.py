"""Result files of the three benchmarks, and the released annotations they are scored against.

Result formats (readers check them and name the file and the line, or the list index, at fault):

* VQA v2: a JSON list of ``{"question_id": int, "answer": str}``, what the evaluation server
  takes; a repeated question id keeps its last entry, as in the official script.
* VCR: the leaderboard CSV, ``annot_id, answer_0..answer_3, rationale_conditioned_on_a{i}_{j}``
  (i, j in 0..3): P(answer i) and P(rationale j | answer i).
* SNLI-VE: jsonl, one ``{"pairID": str, "prediction": label}`` per line.

Writers are atomic (a temporary file moved into place): a crash never leaves half a result file.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from extract.store.atomic import json_error, read_json, write_bytes_atomic
from train.metrics import (
    SNLI_VE_LABELS,
    VCR_CHOICES,
    VcrPrediction,
    check_same_ids,
    is_int,
    snli_ve_label,
    vcr_scores,
)

log = logging.getLogger(__name__)

PathLike = str | Path

VCR_CSV_HEADER: tuple[str, ...] = (
    "annot_id",
    *(f"answer_{i}" for i in range(VCR_CHOICES)),
    *(f"rationale_conditioned_on_a{i}_{j}" for i in range(VCR_CHOICES) for j in range(VCR_CHOICES)),
)


# ----------------------------------------------------------------------------- shared readers


FIX = "the file is damaged or cut short: write it again, or download the release again"


def load_json(path: PathLike) -> Any:
    """Parse a JSON file; a syntax error names the file, line and column."""
    return read_json(path, fix=FIX)


def iter_jsonl(path: PathLike) -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for each non-blank line of a jsonl file (lines count from 1)."""
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise json_error(path, error, FIX, line=line_no) from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object on each line")
            yield line_no, record


def _json_list(data: Any, key: str, path: PathLike) -> list:
    """``data[key]`` of a released JSON file, which must be a list."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
    return value


# ----------------------------------------------------------------------------- VQA v2


def write_vqa_results(path: PathLike, predictions: Mapping[int, str]) -> None:
    """The official results file: one entry per question, in the mapping's order."""
    entries = []
    for question_id, answer in predictions.items():
        if not is_int(question_id) or not isinstance(answer, str):
            raise ValueError(
                f"VQA results need int question ids and str answers, got {question_id!r}: "
                f"{answer!r}"
            )
        entries.append({"question_id": int(question_id), "answer": answer})
    write_bytes_atomic(path, (json.dumps(entries, ensure_ascii=False) + "\n").encode("utf-8"))


def _vqa_result_entry(entry: Any, path: PathLike, index: int) -> tuple[int, str]:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: entry {index} of the list is not a JSON object")
    question_id, answer = entry.get("question_id"), entry.get("answer")
    if not is_int(question_id):
        raise ValueError(f"{path}: entry {index}: 'question_id' must be an integer")
    if not isinstance(answer, str):
        raise ValueError(f"{path}: entry {index}: 'answer' must be a string")
    return question_id, answer


def read_vqa_results(path: PathLike) -> dict[int, str]:
    """``question_id -> answer``; a repeated id keeps its last entry (the official rule), logged."""
    entries = load_json(path)
    if not isinstance(entries, list):
        raise ValueError(f'{path}: expected a JSON list of {{"question_id": int, "answer": str}}')
    predictions: dict[int, str] = {}
    for index, entry in enumerate(entries):
        question_id, answer = _vqa_result_entry(entry, path, index)
        predictions[question_id] = answer
    repeated = len(entries) - len(predictions)
    if repeated:
        log.warning(
            "%s: %d entries repeat a question id; each id keeps its last entry, as the official "
            "evaluation does",
            path,
            repeated,
        )
    return predictions


def read_vqa_questions(path: PathLike) -> list[dict]:
    """The ``questions`` list of a ``v2_OpenEnded_mscoco_*_questions.json`` file."""
    questions = _json_list(load_json(path), "questions", path)
    for index, question in enumerate(questions):
        if not isinstance(question, dict) or not is_int(question.get("question_id")):
            raise ValueError(f"{path}: questions[{index}] has no integer 'question_id'")
    return questions


def _vqa_annotation_problem(annotation: Any) -> str | None:
    if not isinstance(annotation, dict):
        return "is not a JSON object"
    if not is_int(annotation.get("question_id")):
        return "has no integer 'question_id'"
    for name in ("answer_type", "question_type"):
        if not isinstance(annotation.get(name), str):
            return f"has no string {name!r}"
    answers = annotation.get("answers")
    if not isinstance(answers, list) or not answers:
        return "has no 'answers' list"
    if not all(isinstance(a, dict) and isinstance(a.get("answer"), str) for a in answers):
        return "has an entry of 'answers' without a string 'answer'"
    return None


def read_vqa_annotations(path: PathLike) -> list[dict]:
    """The ``annotations`` list of a ``v2_mscoco_*_annotations.json`` file, checked."""
    annotations = _json_list(load_json(path), "annotations", path)
    for index, annotation in enumerate(annotations):
        problem = _vqa_annotation_problem(annotation)
        if problem:
            raise ValueError(f"{path}: annotations[{index}] {problem}")
    return annotations


# ----------------------------------------------------------------------------- VCR


def _finite(value: Any, what: str) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{what} is {number}: probabilities must be finite numbers")
    return number


@dataclass(frozen=True)
class VcrProbs:
    """The leaderboard probabilities of one VCR question."""

    answer: tuple[float, ...]  # [4]: P(answer i)
    rationale: tuple[tuple[float, ...], ...]  # [4][4]: P(rationale j | answer i)

    @classmethod
    def of(cls, answer: Sequence[float], rationale: Sequence[Sequence[float]]) -> VcrProbs:
        """From lists or arrays of shape [4] and [4, 4]."""
        if len(answer) != VCR_CHOICES or len(rationale) != VCR_CHOICES:
            raise ValueError("VCR probabilities need shapes [4] (answers) and [4][4] (rationales)")
        if any(len(row) != VCR_CHOICES for row in rationale):
            raise ValueError("VCR rationale probabilities need shape [4][4]")
        return cls(
            tuple(_finite(p, f"answer_{i}") for i, p in enumerate(answer)),
            tuple(
                tuple(_finite(p, f"rationale {i},{j}") for j, p in enumerate(row))
                for i, row in enumerate(rationale)
            ),
        )

    def values(self) -> list[float]:
        """The 20 numbers in leaderboard column order."""
        return [*self.answer, *(p for row in self.rationale for p in row)]


def write_vcr_leaderboard(
    path: PathLike, probs: Mapping[str, VcrProbs | tuple[Sequence[float], Sequence]]
) -> None:
    """The leaderboard CSV; numbers in ``repr`` form, which reads back as the very same float."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(VCR_CSV_HEADER)
    for annot_id, value in probs.items():
        row = value if isinstance(value, VcrProbs) else VcrProbs.of(*value)
        writer.writerow([annot_id, *(repr(p) for p in row.values())])
    write_bytes_atomic(path, buffer.getvalue().encode("utf-8"))


def _check_vcr_header(header: list[str] | None, path: PathLike) -> None:
    if header is None:
        raise ValueError(f"{path}:1: empty file, expected the VCR leaderboard header")
    got = tuple(name.strip() for name in header)
    if got != VCR_CSV_HEADER:
        raise ValueError(
            f"{path}:1: not the VCR leaderboard header ({len(got)} columns); expected the "
            f"{len(VCR_CSV_HEADER)} columns annot_id, answer_0..answer_3, "
            "rationale_conditioned_on_a0_0 .. rationale_conditioned_on_a3_3 (i outer, j inner)"
        )


def _parse_vcr_row(row: list[str], path: PathLike, line: int) -> VcrProbs:
    if len(row) != len(VCR_CSV_HEADER):
        raise ValueError(f"{path}:{line}: {len(row)} columns, expected {len(VCR_CSV_HEADER)}")
    numbers = []
    for name, cell in zip(VCR_CSV_HEADER[1:], row[1:], strict=True):
        try:
            numbers.append(_finite(cell, name))
        except ValueError:
            raise ValueError(f"{path}:{line}: {name} = {cell!r} is not a finite number") from None
    rationale = [numbers[4 + 4 * i : 8 + 4 * i] for i in range(VCR_CHOICES)]
    return VcrProbs.of(numbers[:4], rationale)


def read_vcr_leaderboard(path: PathLike) -> dict[str, VcrProbs]:
    """``annot_id -> VcrProbs`` of a leaderboard CSV; a repeated annot_id is an error."""
    probs: dict[str, VcrProbs] = {}
    first_line: dict[str, int] = {}
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        _check_vcr_header(next(reader, None), path)
        for row in reader:
            if not row:
                continue
            annot_id = row[0].strip()
            if annot_id in probs:
                raise ValueError(
                    f"{path}:{reader.line_num}: annot_id {annot_id!r} repeats line "
                    f"{first_line[annot_id]}"
                )
            probs[annot_id] = _parse_vcr_row(row, path, reader.line_num)
            first_line[annot_id] = reader.line_num
    return probs


def _vcr_label(record: dict, name: str, path: PathLike, line: int) -> int:
    value = record.get(name)
    if value is None:
        raise ValueError(
            f"{path}:{line}: no {name!r} (test annotations hide the labels: score test "
            "predictions on the leaderboard)"
        )
    if not is_int(value) or not 0 <= value < VCR_CHOICES:
        raise ValueError(f"{path}:{line}: {name} must be an integer 0..3, got {value!r}")
    return value


def read_vcr_labels(path: PathLike) -> dict[str, tuple[int, int]]:
    """``annot_id -> (answer_label, rationale_label)`` of a VCR ``train``/``val`` jsonl.

    A record without ``annot_id`` gets the conventional ``<split>-<0-based line index>``, the split
    being the file's stem.
    """
    split = Path(path).stem
    labels: dict[str, tuple[int, int]] = {}
    for line_no, record in iter_jsonl(path):
        annot_id = str(record.get("annot_id", f"{split}-{line_no - 1}"))
        if annot_id in labels:
            raise ValueError(f"{path}:{line_no}: annot_id {annot_id!r} occurs twice")
        answer = _vcr_label(record, "answer_label", path, line_no)
        labels[annot_id] = (answer, _vcr_label(record, "rationale_label", path, line_no))
    return labels


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first one on ties (as ``numpy.argmax``)."""
    return max(range(len(values)), key=values.__getitem__)


def vcr_prediction(
    annot_id: str, probs: VcrProbs, answer_label: int, rationale_label: int
) -> VcrPrediction:
    """Answer = argmax of P(answer); rationale = argmax of P(rationale | GOLD answer), as QA->R
    puts the ground-truth answer in the query."""
    return VcrPrediction(
        annot_id=annot_id,
        answer_pred=argmax(probs.answer),
        answer_label=answer_label,
        rationale_pred=argmax(probs.rationale[answer_label]),
        rationale_label=rationale_label,
    )


def vcr_scores_from_csv(csv_path: PathLike, annotations_path: PathLike) -> dict:
    """Q->A, QA->R, Q->AR of a leaderboard CSV against labelled annotations (val, or train)."""
    labels = read_vcr_labels(annotations_path)
    probs = read_vcr_leaderboard(csv_path)
    check_same_ids(list(labels), probs, f"{csv_path}")
    rows = [vcr_prediction(key, probs[key], *labels[key]) for key in labels]
    return vcr_scores(rows)


# ----------------------------------------------------------------------------- SNLI-VE


def write_snli_ve_predictions(path: PathLike, predictions: Mapping[str, str | int]) -> None:
    """One ``{"pairID", "prediction"}`` line per pair; labels written as names."""
    lines = [
        json.dumps({"pairID": key, "prediction": snli_ve_label(value)}, ensure_ascii=False) + "\n"
        for key, value in predictions.items()
    ]
    write_bytes_atomic(path, "".join(lines).encode("utf-8"))


def _snli_ve_prediction(record: dict, path: PathLike, line: int) -> tuple[str, str]:
    key = record.get("pairID")
    if not isinstance(key, str):
        raise ValueError(f"{path}:{line}: no string 'pairID'")
    if "prediction" not in record:
        raise ValueError(f"{path}:{line}: no 'prediction'")
    try:
        return key, snli_ve_label(record["prediction"])
    except ValueError as error:
        raise ValueError(f"{path}:{line}: {error}") from None


def read_snli_ve_predictions(path: PathLike) -> dict[str, str]:
    """``pairID -> label name``; a repeated pairID is an error (which line would count?)."""
    predictions: dict[str, str] = {}
    lines: dict[str, int] = {}
    for line_no, record in iter_jsonl(path):
        key, label = _snli_ve_prediction(record, path, line_no)
        if key in predictions:
            raise ValueError(f"{path}:{line_no}: pairID {key!r} repeats line {lines[key]}")
        predictions[key], lines[key] = label, line_no
    return predictions


@dataclass
class SnliVeGold:
    """The gold labels of an SNLI-VE split, and the pairs left out for lack of a 3-way label."""

    labels: dict[str, str] = field(default_factory=dict)  # pairID -> gold label
    skipped: dict[str, str] = field(default_factory=dict)  # pairID -> its gold_label, e.g. "-"


def read_snli_ve_gold(path: PathLike) -> SnliVeGold:
    """Gold labels keyed by ``pairID``; lines whose ``gold_label`` is not one of the 3 labels
    (SNLI's "-": no annotator majority) go to ``skipped``, for the caller to report."""
    gold = SnliVeGold()
    for line_no, record in iter_jsonl(path):
        key, label = record.get("pairID"), record.get("gold_label")
        if not isinstance(key, str):
            raise ValueError(f"{path}:{line_no}: no string 'pairID'")
        if label is None:
            raise ValueError(f"{path}:{line_no}: no 'gold_label'")
        if key in gold.labels or key in gold.skipped:
            raise ValueError(f"{path}:{line_no}: pairID {key!r} occurs twice")
        if label in SNLI_VE_LABELS:
            gold.labels[key] = label
        else:
            gold.skipped[key] = str(label)
    return gold
