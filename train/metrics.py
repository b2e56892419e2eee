"""The official metrics of the three benchmarks, computed the way their reference scripts do.

* VQA v2: the per-question accuracy of ``extract.store.vqa_answers`` (a port of the official
  script), averaged over the questions in annotation order, overall and per answer / question type.
* VCR: Q->A, QA->R (the rationale chosen given the ground-truth answer) and Q->AR (both right).
* SNLI-VE: 3-way top-1 accuracy, overall and per gold label.

Every percentage is ``round_half_up(100 * total / n)``: 2 decimals, decided on the float's exact
binary value with ties away from zero, which is what the official VQA script (Python 2 ``round``)
does; VCR and SNLI-VE use the same rule so that all reported numbers round alike.
Pure Python: scoring a result file needs no torch.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from numbers import Integral
from typing import Any

from extract.store.vqa_answers import vqa_accuracy

DIGITS = 2
SHOWN_IDS = 5  # ids quoted in an error message
VCR_CHOICES = 4
SNLI_VE_LABELS = ("entailment", "neutral", "contradiction")  # also the meaning of 0 / 1 / 2


def round_half_up(value: float, digits: int = DIGITS) -> float:
    """Python 2's ``round(value, digits)``: ties away from zero, judged on the exact float value.

    ``Decimal(value)`` is the exact binary value, so 0.125 (exact) gives 0.13 where Python 3's
    ``round`` gives 0.12, while 2.675 (stored as 2.67499...) gives 2.67 in both, as in Python 2.
    """
    quantum = Decimal(1).scaleb(-digits)
    return float(Decimal(value).quantize(quantum, rounding=ROUND_HALF_UP))


def percent(total: float, n: int) -> float:
    """``round(100 * total / n, 2)`` in the official order of operations and rounding."""
    if n <= 0:
        raise ValueError("cannot compute a percentage over 0 items: nothing was scored")
    return round_half_up(100 * float(total) / n)


def sequential_sum(values: Iterable[float]) -> float:
    """Left-to-right float sum, as the official (Python 2) script adds.

    Python >= 3.12's built-in ``sum`` compensates rounding errors, which can change the last bit
    of a mean and so, rarely, a rounded score.
    """
    total = 0.0
    for value in values:
        total += value
    return total


def is_int(value: Any) -> bool:
    """An integer (Python or numpy), but not a bool."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def first_ids(ids: Sequence[Hashable]) -> str:
    """The first few ids, for an error message ("none" when there are none)."""
    if not ids:
        return "none"
    shown = ", ".join(repr(key) for key in ids[:SHOWN_IDS])
    return shown + (", ..." if len(ids) > SHOWN_IDS else "")


def check_unique(ids: Sequence[Hashable], what: str) -> None:
    """Raise when an id occurs twice: each id must name one question."""
    seen: set[Hashable] = set()
    repeated = []
    for key in ids:
        if key in seen:
            repeated.append(key)
        seen.add(key)
    if repeated:
        raise ValueError(f"{what}: {len(repeated)} repeated ids (first: {first_ids(repeated)})")


def id_differences(
    expected: Sequence[Hashable], given: Collection[Hashable]
) -> tuple[list[Hashable], list[Hashable]]:
    """(expected ids missing from ``given``, ids of ``given`` not expected), each in order."""
    expected_set = set(expected)
    missing = [key for key in expected if key not in given]
    extra = [key for key in given if key not in expected_set]
    return missing, extra


def check_same_ids(expected: Sequence[Hashable], given: Collection[Hashable], what: str) -> None:
    """Raise unless the predictions ``given`` cover exactly the ``expected`` (annotated) ids."""
    missing, extra = id_differences(expected, given)
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} of the {len(expected)} annotated ids have no prediction "
            f"(first: {first_ids(missing)}); the official metric needs one for every id"
        )
    if extra:
        problems.append(
            f"{len(extra)} predicted ids are not in the annotations (first: {first_ids(extra)}); "
            "score them against the annotation file of the split they were predicted on"
        )
    if problems:
        raise ValueError(f"{what}: " + "; ".join(problems))


def _mean_percent(values: Sequence[float]) -> float:
    return percent(sequential_sum(values), len(values))


def _percent_by_key(groups: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {key: _mean_percent(groups[key]) for key in sorted(groups)}


def _vqa_field(annotation: Mapping, name: str, index: int) -> Any:
    try:
        return annotation[name]
    except (KeyError, TypeError):
        raise ValueError(f"VQA annotation {index}: no {name!r} field") from None


def _vqa_gold_answers(annotation: Mapping, index: int) -> list[str]:
    answers = _vqa_field(annotation, "answers", index)
    texts = [entry.get("answer") if isinstance(entry, Mapping) else None for entry in answers]
    if not texts or not all(isinstance(text, str) for text in texts):
        raise ValueError(
            f"VQA annotation {index}: 'answers' must be a non-empty list of {{'answer': str}}"
        )
    return texts


def _vqa_prediction(predictions: Mapping[int, str], question_id: int) -> str:
    answer = predictions[question_id]
    if not isinstance(answer, str):
        raise ValueError(f"VQA results: the answer of question {question_id} is not a string")
    return answer


def vqa_scores(predictions: Mapping[int, str], annotations: Sequence[Mapping]) -> dict:
    """The official VQA v2 evaluation of ``{question_id: answer}`` against annotation entries.

    ``annotations`` is the ``"annotations"`` list of a ``v2_mscoco_*_annotations.json`` file (each
    entry with question_id, answers, answer_type, question_type); the predictions must cover
    exactly its question ids. Scores are percentages (see ``percent``); per-type keys are sorted.
    """
    ids = [_vqa_field(annotation, "question_id", i) for i, annotation in enumerate(annotations)]
    check_unique(ids, "VQA annotations")
    check_same_ids(ids, predictions, "VQA results")
    overall: list[float] = []
    per_answer: dict[str, list[float]] = {}
    per_question: dict[str, list[float]] = {}
    for index, (question_id, annotation) in enumerate(zip(ids, annotations, strict=True)):
        gold = _vqa_gold_answers(annotation, index)
        accuracy = vqa_accuracy(_vqa_prediction(predictions, question_id), gold)
        overall.append(accuracy)
        per_answer.setdefault(_vqa_field(annotation, "answer_type", index), []).append(accuracy)
        per_question.setdefault(_vqa_field(annotation, "question_type", index), []).append(accuracy)
    return {
        "overall": _mean_percent(overall),
        "per_answer_type": _percent_by_key(per_answer),
        "per_question_type": _percent_by_key(per_question),
        "n": len(overall),
    }


@dataclass(frozen=True)
class VcrPrediction:
    """One VCR question: the chosen answer, and the rationale chosen given the GOLD answer.

    QA->R is defined with the ground-truth answer in the query, so ``rationale_pred`` must come
    from the model run on (question, gold answer), whatever answer it predicted.
    """

    annot_id: str
    answer_pred: int
    answer_label: int
    rationale_pred: int
    rationale_label: int

    def __post_init__(self) -> None:
        for name in ("answer_pred", "answer_label", "rationale_pred", "rationale_label"):
            value = getattr(self, name)
            if not is_int(value) or not 0 <= value < VCR_CHOICES:
                raise ValueError(
                    f"VCR {self.annot_id}: {name} must be a choice index 0..3, got {value!r}"
                )


def vcr_scores(rows: Iterable[VcrPrediction]) -> dict:
    """Q->A, QA->R and Q->AR accuracies (percentages) over one prediction per question."""
    rows = list(rows)
    check_unique([row.annot_id for row in rows], "VCR predictions")
    answer_right = [row.answer_pred == row.answer_label for row in rows]
    rationale_right = [row.rationale_pred == row.rationale_label for row in rows]
    both_right = [a and r for a, r in zip(answer_right, rationale_right, strict=True)]
    n = len(rows)
    return {
        "q2a": percent(sum(answer_right), n),
        "qa2r": percent(sum(rationale_right), n),
        "q2ar": percent(sum(both_right), n),
        "n": n,
    }


def snli_ve_label(value: str | int) -> str:
    """The label name of ``value``: a name, or 0 / 1 / 2 (entailment / neutral / contradiction)."""
    if isinstance(value, str) and value in SNLI_VE_LABELS:
        return value
    if is_int(value) and 0 <= value < len(SNLI_VE_LABELS):
        return SNLI_VE_LABELS[int(value)]
    raise ValueError(
        f"{value!r} is not an SNLI-VE label: use one of {', '.join(SNLI_VE_LABELS)} "
        "or 0 / 1 / 2 in that order"
    )


def _label_of(value: str | int, key: str, what: str) -> str:
    try:
        return snli_ve_label(value)
    except ValueError as error:
        raise ValueError(f"{what} of {key!r}: {error}") from None


def snli_ve_accuracy(predictions: Mapping[str, str | int], gold: Mapping[str, str | int]) -> dict:
    """3-way top-1 accuracy (percentage), overall and per gold label, over exactly gold's ids.

    ``per_label`` lists only the labels that occur in ``gold``, in the order of SNLI_VE_LABELS;
    its accuracy is the share of that label's pairs predicted right (the label's recall).
    """
    keys = list(gold)
    check_same_ids(keys, predictions, "SNLI-VE predictions")
    right: dict[str, list[bool]] = {label: [] for label in SNLI_VE_LABELS}
    for key in keys:
        truth = _label_of(gold[key], key, "gold label")
        right[truth].append(_label_of(predictions[key], key, "prediction") == truth)
    correct = sum(sum(values) for values in right.values())
    return {
        "accuracy": percent(correct, len(keys)),
        "n": len(keys),
        "per_label": {
            label: {"accuracy": percent(sum(values), len(values)), "n": len(values)}
            for label, values in right.items()
            if values
        },
    }
