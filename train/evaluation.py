"""Run a trained model over a split: predictions, official metrics, per-type accuracy."""

from __future__ import annotations

from collections import defaultdict

import torch

from train import metrics
from train.model import DistilledStudent
from train.tasks import TaskSpec


@torch.inference_mode()
def predict(model: DistilledStudent, loader, device: torch.device) -> list[dict]:
    """One row per sample: key, meta, and the model's probabilities per group (or answer)."""
    model.eval()
    rows = []
    task = model.head.task
    for batch in loader:
        batch = to_device(batch, device)
        _, logits = model.encode(batch)
        for i, key in enumerate(batch["keys"]):
            row = {"key": key, "meta": batch["metas"][i]}
            if task.kind == "multiple_choice":
                row["probs"] = {
                    g.name: logits[i, g.start : g.stop].float().softmax(-1).tolist()
                    for g in task.groups
                }
            else:
                row["probs"] = (
                    logits[i].float().softmax(-1).tolist()
                    if task.kind == "classification"
                    else None
                )
                row["prediction"] = int(logits[i].argmax())
            rows.append(row)
    return rows


def to_device(batch: dict, device: torch.device) -> dict:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def score(task: TaskSpec, rows: list[dict]) -> dict:
    """Metrics of a labelled split; ``{"score": ...}`` is the model-selection number."""
    labelled = [row for row in rows if has_label(task, row["meta"])]
    if not labelled:
        return {"n": 0, "score": None, "note": "no labels in this split (predictions only)"}
    if task.kind == "multiple_choice":
        return multiple_choice_scores(task, labelled)
    if task.kind == "classification":
        return classification_scores(task, labelled)
    return vqa_scores(task, labelled)


def has_label(task: TaskSpec, meta: dict) -> bool:
    if task.kind == "soft_score":
        return "answers" in meta
    return meta.get(task.groups[0].label_key) is not None


def multiple_choice_scores(task: TaskSpec, rows: list[dict]) -> dict:
    """VCR: Q->A, QA->R (rationales scored with the gold answer), Q->AR (both right)."""
    right = {
        g.name: [argmax(r["probs"][g.name]) == int(r["meta"][g.label_key]) for r in rows]
        for g in task.groups
    }
    if "qar" in right:
        result = metrics.vcr_scores([vcr_row(row) for row in rows])
        result["score"] = result["q2ar"]
    else:
        result = {"n": len(rows), "q2a": percent(right["qa"])}
        result["score"] = result["q2a"]
    result["per_type"] = per_type(rows, right["qa"], "source")
    return result


def vcr_row(row: dict) -> metrics.VcrPrediction:
    meta, probs = row["meta"], row["probs"]
    return metrics.VcrPrediction(
        row["key"], argmax(probs["qa"]), int(meta["answer_label"]),
        argmax(probs["qar"]), int(meta["rationale_label"]),
    )  # fmt: skip


def classification_scores(task: TaskSpec, rows: list[dict]) -> dict:
    right = [row["prediction"] == int(row["meta"]["label"]) for row in rows]
    named = [
        dict(row, meta={**row["meta"], "label_name": task.labels[int(row["meta"]["label"])]})
        for row in rows
    ]
    accuracy = percent(right)
    return {
        "n": len(rows),
        "accuracy": accuracy,
        "score": accuracy,
        "per_type": per_type(named, right, "label_name"),
    }


def vqa_scores(task: TaskSpec, rows: list[dict]) -> dict:
    """The official VQA accuracy (train.metrics) over the split's questions."""
    annotations = [
        {
            "question_id": index,
            "answers": [{"answer": answer} for answer in row["meta"]["answers"]],
            "answer_type": row["meta"].get("answer_type"),
            "question_type": row["meta"].get("question_type"),
        }
        for index, row in enumerate(rows)
    ]
    predictions = {index: task.labels[row["prediction"]] for index, row in enumerate(rows)}
    result = metrics.vqa_scores(predictions, annotations)
    return {
        "n": result["n"],
        "overall": result["overall"],
        "score": result["overall"],
        "per_type": result["per_answer_type"],
        "per_question_type": result["per_question_type"],
    }


def per_type(rows: list[dict], right: list[bool], key: str) -> dict:
    groups = defaultdict(list)
    for row, ok in zip(rows, right, strict=True):
        groups[str(row["meta"].get(key))].append(ok)
    return {name: percent(values) for name, values in sorted(groups.items())}


def argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)


def percent(flags: list[bool]) -> float:
    return round(100.0 * sum(flags) / max(len(flags), 1), 2)
