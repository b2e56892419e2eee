"""Checks and small pieces a training run needs before and around its loop."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from extract.store import CacheReader
from extract.store.roles import split_role


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


REGION_FIELDS = ("regions", "student_regions")  # counted by region_count


@dataclass
class RunFields:
    """The cache fields a run reads: the student's inputs (every batch, evaluation too), the
    distillation targets put in training batches, and fields read only to make targets."""

    inputs: list[str]
    targets: list[str] = field(default_factory=list)
    helpers: list[str] = field(default_factory=list)

    @property
    def training(self) -> list[str]:
        return list(dict.fromkeys(self.inputs + self.targets + self.helpers))


def visual_kind(cache: CacheReader, name: str) -> str:
    """pixels (uint8 patches), regions (RoI features counted by region_count) or grid."""
    if cache.fields[name].storage == "uint8":
        return "pixels"
    return "regions" if name in REGION_FIELDS else "grid"


def choose_visual_field(cache: CacheReader, requested: str) -> str:
    """``--student-visual``: ``auto`` is the cache's student input (pixels or a frozen grid)."""
    name = requested
    if requested == "auto":
        name = cache.config.get("student_input_field", "pixels")
    usable = [
        n for n in cache.fields if n in ("pixels", "student_grid", "img_grid", *REGION_FIELDS)
    ]
    if name not in usable:
        raise ValueError(
            f"--student-visual {requested}: {cache.cache_dir} has no visual field {name!r}; "
            f"it has {usable}"
        )
    return name


def required_fields(
    cache: CacheReader, config, visual: str, text_fields: tuple[str, ...], text_targets: tuple
) -> RunFields:
    """The fields this run reads; a cache without them is refused, naming the fix."""
    inputs = [visual, *text_fields]
    if visual_kind(cache, visual) == "regions":
        inputs.append("region_count")
    targets, helpers = [], []
    if config.distill.mode != "none":
        kind = config.distill.target
        if "vis" in config.distill.branches:
            grid = "regions" if visual_kind(cache, visual) == "regions" else "img_grid"
            targets.append(grid if kind == "tokens" else "img_emb")
        if "txt" in config.distill.branches:
            if kind == "tokens":
                targets.append(text_targets[0])
                helpers += list(text_targets[1:])
            else:
                targets.append("txt_emb")
    fields = RunFields(inputs, targets, helpers)
    missing = [name for name in fields.training if name not in cache.fields]
    if missing:
        raise ValueError(missing_fields_message(cache, config, missing))
    return fields


def missing_fields_message(cache: CacheReader, config, missing: list[str]) -> str:
    if "token_spans" in missing:
        return (
            f"{cache.cache_dir} has no token_spans (it was extracted before the cache kept each "
            "teacher token's characters), which a student with its own tokenizer needs for "
            "per-token text targets; extract it again into a new --out with python -m "
            "extract.run (or train with --target global, --branches vis, or a student that "
            "reads the teacher's token ids)"
        )
    flags = {"img_grid": "--no-image-tokens", "txt_tok": "--no-text-tokens"}
    dropped = [flags[name] for name in missing if name in flags]
    fix = f"extract again without {' and '.join(dropped)}" if dropped else "extract it again"
    return (
        f"{cache.cache_dir} lacks the field(s) {missing} that these flags need "
        f"(--distill {config.distill.mode} --target {config.distill.target}); {fix}: "
        f"python -m extract.run --out {cache.cache_dir} ... "
        "(or train with --target global or --distill none)"
    )


def default_splits(cache: CacheReader, config) -> tuple[str | None, list[str]]:
    """The model-selection split (``--val-split``, else the first one the cache records as
    ``val`` with labels) and the evaluated ones; a held-out (``test``) split is never trained
    on nor used for selection, whatever its name."""
    if config.train_split not in cache.splits:
        raise ValueError(
            f"--train-split {config.train_split!r}: {cache.cache_dir} has {cache.splits}"
        )
    check_role(cache, config.train_split, "--train-split", "training")
    val = config.val_split or next(
        (s for s in cache.splits if split_role(cache.config, s) == {"role": "val", "labels": True}),
        None,
    )
    evals = config.eval_splits or [s for s in cache.splits if s != config.train_split]
    unknown = [s for s in [val, *evals] if s is not None and s not in cache.splits]
    if unknown:
        raise ValueError(f"split(s) {unknown} not in {cache.cache_dir}; it has {cache.splits}")
    if val is not None:
        check_role(cache, val, "--val-split", "model selection")
    return val, evals


def check_role(cache: CacheReader, split: str, option: str, use: str) -> None:
    role = split_role(cache.config, split)
    if role["role"] == "test":
        raise ValueError(
            f"{option} {split}: {cache.cache_dir} records it as a held-out test split, which "
            f"{use} never uses (if it is not held out, extract the cache with --split-role "
            f"{split}=train or {split}=val)"
        )
    if not role["labels"]:
        raise ValueError(f"{option} {split}: its labels are hidden; {use} needs them")


def check_means_split(cache: CacheReader, train_split: str) -> None:
    """The stored means centre the targets of the split they were computed on, and no other."""
    means_split = cache.config.get("means_split", train_split)
    if means_split != train_split:
        raise ValueError(
            f"{cache.cache_dir}: its target means were computed on split {means_split!r} and "
            f"this run trains on {train_split!r}; train on {means_split!r}, or extract a cache "
            f"whose means split is {train_split!r} (the means are over 'train', else over the "
            "first split given), or train with --distill none (no means needed)"
        )


def keep_log_until(path: Path, epoch: int) -> None:
    """Drop log lines of epochs after ``epoch`` (an interrupted epoch is trained again)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= epoch]
    path.write_text("".join(line + "\n" for line in lines))


def make_optimizer(
    model: torch.nn.Module, lr: float, weight_decay: float, lr_new: float | None = None
) -> torch.optim.AdamW:
    """AdamW, fused: one kernel over all parameters. On 2 CPU cores it steps the 23M-parameter
    MiniLM student in 0.017 s against 0.16 s for the default loop (BENCHMARKS.md); its rounding
    differs from the loop's, so results are not bit-identical to runs made before 2026-12-02.

    ``lr_new``: the peak learning rate of the parameters that start new (task head, projection
    heads, adapters, anything a checkpoint did not hold); pretrained ones take ``lr``. Both
    follow the same warmup and cosine schedule.
    """
    pretrained = {f"student.{name}" for name in model.student.pretrained_names()}
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in pretrained], "lr": lr},
        {
            "params": [p for n, p in model.named_parameters() if n not in pretrained],
            "lr": lr if lr_new is None else lr_new,
        },
    ]
    groups = [group for group in groups if group["params"]]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=True)


def schedule(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 0: the learning-rate factor at ``step``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
