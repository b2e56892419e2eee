"""Helpers of a training run: checkpoints, run configuration, and the summaries in its report."""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from extract.store.atomic import write_json_atomic
from train.data import stratum
from train.results_io import write_snli_ve_predictions, write_vcr_leaderboard, write_vqa_results
from train.tasks import TaskSpec


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def save_atomic(value: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(value, tmp)
    os.replace(tmp, path)


def config_json(config) -> dict:
    """The run's settings as JSON (a resumed run must match them)."""
    data = asdict(config)
    data["cache"], data["out"] = str(config.cache), str(config.out)
    data["distill"]["branches"] = list(config.distill.branches)
    data["train_where"] = [list(p) for p in config.train_where]
    data["eval_where"] = [list(p) for p in config.eval_where]
    data.pop("resume")
    data.pop("checkpoint_every")  # how often last.pt is saved changes no result
    data.pop("check_cache")  # nor does checking the cache's checksums
    return data


def weight_summary(weights: dict[str, float], metas: dict[str, dict], task: TaskSpec) -> dict:
    """How the confidence weights are distributed per label and per question type."""
    if not weights:
        return {}
    summary = {}
    for facet in ("label", "question_type"):
        groups: dict[str, list[float]] = {}
        for key, value in weights.items():
            meta = metas[key]
            name = (
                stratum(task, meta)
                if facet == "label"
                else str(meta.get("question_type", meta.get("source")))
            )
            groups.setdefault(name, []).append(value)
        summary[facet] = {name: describe(values) for name, values in sorted(groups.items())}
    summary["all"] = describe(list(weights.values()))
    return summary


def describe(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {
        "n": int(array.size),
        "mean": round(float(array.mean()), 4),
        "std": round(float(array.std()), 4),
        "min": round(float(array.min()), 4),
        "max": round(float(array.max()), 4),
    }


def distill_share(history: list[dict]) -> dict:
    vis = sum(entry.get("distill_vis", 0.0) for entry in history)
    txt = sum(entry.get("distill_txt", 0.0) for entry in history)
    total = vis + txt
    return {"vis": round(vis / total, 4), "txt": round(txt / total, 4)} if total > 0 else {}


def write_predictions(out: Path, split: str, task: TaskSpec, rows: list[dict]) -> list[Path]:
    """Predictions of one split in the official result formats, plus one JSON row per sample.

    VCR's leaderboard CSV needs QA->R scored under each candidate answer: the hidden-label split
    holds those records (``<annot_id>@a<i>``); a labelled split holds only the gold-conditioned
    rationales, so its CSV repeats them in every ``rationale_conditioned_on_a{i}`` row (which is
    exactly what QA->R scoring reads).
    """
    folder = out / "predictions"
    paths = [folder / f"{split}.json"]
    write_json_atomic(paths[0], [simple_row(task, row) for row in rows], indent=None)
    if task.name == "vqa":
        paths.append(folder / f"{split}.vqa_results.json")
        answers = {
            int(row["meta"]["question_id"])
            if "question_id" in row["meta"]
            else int(row["key"]): task.labels[row["prediction"]]
            for row in rows
        }
        write_vqa_results(paths[-1], answers)
    elif task.name == "snli_ve":
        paths.append(folder / f"{split}.snli_ve.jsonl")
        write_snli_ve_predictions(
            paths[-1], {row["key"]: task.labels[row["prediction"]] for row in rows}
        )
    elif task.name == "vcr-qar":
        paths.append(folder / f"{split}.vcr_leaderboard.csv")
        write_vcr_leaderboard(paths[-1], vcr_probabilities(rows))
    return paths


def question_id(row: dict) -> int:
    """VQA keys are the question ids."""
    return int(row["meta"].get("question_id", row["key"]))


def simple_row(task: TaskSpec, row: dict) -> dict:
    if task.kind == "multiple_choice":
        return {"key": row["key"], "probs": row["probs"]}
    return {"key": row["key"], "prediction": task.labels[row["prediction"]]}


def vcr_probabilities(rows: list[dict]) -> dict[str, tuple[list[float], list[list[float]]]]:
    """Per annot_id: answer probabilities [4], rationale probabilities under each answer [4][4]."""
    answers: dict[str, list[float]] = {}
    rationales: dict[str, dict[int, list[float]]] = {}
    for row in rows:
        meta = row["meta"]
        annot = meta.get("annot_id", row["key"].split("@")[0])
        answers.setdefault(annot, row["probs"]["qa"])
        conditioned = meta.get("conditioned_on")
        under = rationales.setdefault(annot, {})
        if conditioned is None:
            under.update({i: row["probs"]["qar"] for i in range(4)})
        else:
            under[int(conditioned)] = row["probs"]["qar"]
    return {annot: (answers[annot], [rationales[annot][i] for i in range(4)]) for annot in answers}
