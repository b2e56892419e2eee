"""Checks and small pieces a training run needs before and around its loop."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import torch

from extract.store import CacheReader
from train.tasks import TaskSpec


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def required_fields(cache: CacheReader, task: TaskSpec, config, visual: str) -> list[str]:
    """The fields this run reads; a cache without them is refused, naming the fix."""
    fields = [visual, "token_ids", "token_len"]
    if config.distill.mode != "none":
        kind = config.distill.target
        if "vis" in config.distill.branches:
            fields.append("img_grid" if kind == "tokens" else "img_emb")
        if "txt" in config.distill.branches:
            fields.append("txt_tok" if kind == "tokens" else "txt_emb")
    missing = [name for name in fields if name not in cache.fields]
    if missing:
        flags = {"img_grid": "--no-image-tokens", "txt_tok": "--no-text-tokens"}
        dropped = [flags[name] for name in missing if name in flags]
        fix = f"extract again without {' and '.join(dropped)}" if dropped else "extract it again"
        raise ValueError(
            f"{cache.cache_dir} lacks the field(s) {missing} that these flags need "
            f"(--distill {config.distill.mode} --target {config.distill.target}); {fix}: "
            f"python -m extract.run --out {cache.cache_dir} ... "
            "(or train with --target global or --distill none)"
        )
    return fields


def default_splits(cache: CacheReader, config) -> tuple[str | None, list[str]]:
    if config.train_split not in cache.splits:
        raise ValueError(
            f"--train-split {config.train_split!r}: {cache.cache_dir} has {cache.splits}"
        )
    val = config.val_split or next((s for s in ("val", "dev") if s in cache.splits), None)
    evals = config.eval_splits or [s for s in cache.splits if s != config.train_split]
    unknown = [s for s in [val, *evals] if s is not None and s not in cache.splits]
    if unknown:
        raise ValueError(f"split(s) {unknown} not in {cache.cache_dir}; it has {cache.splits}")
    if val is not None and val.startswith("test"):
        raise ValueError(f"--val-split {val}: model selection never uses a test split")
    return val, evals


def keep_log_until(path: Path, epoch: int) -> None:
    """Drop log lines of epochs after ``epoch`` (an interrupted epoch is trained again)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= epoch]
    path.write_text("".join(line + "\n" for line in lines))


def schedule(step: int, total: int, warmup: int) -> float:
    """Linear warmup, then cosine decay to 0: the learning-rate factor at ``step``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
