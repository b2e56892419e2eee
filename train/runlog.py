"""What a training run logs as it goes: ``metrics.jsonl`` (every optimiser step and epoch) and,
beside it, TensorBoard event files with the same numbers (``tensorboard --logdir runs/`` shows a
whole grid of runs): the loss terms and learning rate per step, the epoch means and validation
scores per epoch, and the distribution of MAD's confidence weights.

A resumed run first drops what the interrupted one logged after its last finished epoch (the
JSON lines, and TensorBoard's events through ``purge_step``), since those steps run again.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from train.setup import keep_log_until

LOSSES = ("loss", "task", "distill_vis", "distill_txt")


class RunLog:
    def __init__(self, out: Path, finished_epochs: int, finished_steps: int):
        from torch.utils.tensorboard import SummaryWriter

        keep_log_until(out / "metrics.jsonl", finished_epochs)
        self.lines = open(out / "metrics.jsonl", "a")  # closed by close()
        purge = finished_steps + 1 if finished_epochs else None
        self.board = SummaryWriter(log_dir=str(out), purge_step=purge)

    def step(self, epoch: int, entry: dict) -> None:
        """One optimiser step: ``entry`` holds ``step``, the loss terms and ``lr``."""
        self.lines.write(json.dumps({"kind": "step", "epoch": epoch, **entry}) + "\n")
        for name in (*LOSSES, "lr"):
            self.board.add_scalar(f"step/{name}", entry[name], entry["step"])

    def epoch(self, entry: dict, step: int) -> None:
        """One finished epoch: its mean losses, learning rate and validation scores."""
        self.lines.write(json.dumps(entry) + "\n")
        self.lines.flush()
        for name in (*LOSSES, "lr"):
            self.board.add_scalar(f"epoch/{name}", entry[name], step)
        for name, value in (entry.get("val") or {}).items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                self.board.add_scalar(f"val/{name}", value, step)
        self.board.flush()

    def weights(self, weights: dict[str, float]) -> None:
        """MAD's confidence weights of the training samples (once per run)."""
        if weights:
            self.board.add_histogram("confidence_weights", np.asarray(list(weights.values())), 0)

    def close(self) -> None:
        self.lines.close()
        self.board.close()


class NoLog:
    """What ranks other than 0 log under DDP: nothing (rank 0 logs the run)."""

    def step(self, epoch: int, entry: dict) -> None:
        return None

    def epoch(self, entry: dict, step: int) -> None:
        return None

    def weights(self, weights: dict[str, float]) -> None:
        return None

    def close(self) -> None:
        return None
