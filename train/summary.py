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


def write_predictions(out: Path, split: str, task: TaskSpec, rows: list[dict]) -> None:
    """Predictions of one split, one JSON row per sample."""
    simple = []
    for row in rows:
        entry = {"key": row["key"]}
        if task.kind == "multiple_choice":
            entry["probs"] = row["probs"]
        else:
            entry["prediction"] = task.labels[row["prediction"]]
        simple.append(entry)
    write_json_atomic(out / "predictions" / f"{split}.json", simple, indent=None)
