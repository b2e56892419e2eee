"""The trainable pieces together: student + task head (+ training-only projection heads)."""

from __future__ import annotations

import torch
from torch import nn

from train.mad import DistillConfig, DistillHeads, distill_loss
from train.students import StudentBase, StudentOutput
from train.tasks import TaskHead, TaskSpec

VISUAL_TARGETS = ("img_grid", "img_emb", "regions")


class DistilledStudent(nn.Module):
    def __init__(
        self, student: StudentBase, task: TaskSpec, image_dim: int, text_dim: int, distill: bool
    ):
        super().__init__()
        self.student = student
        self.head = TaskHead(student.width, task)
        self.distill_heads = DistillHeads(student.width, image_dim, text_dim) if distill else None

    def encode(self, batch: dict) -> tuple[StudentOutput, torch.Tensor]:
        """Every (image, candidate) sequence of the batch -> student output and task logits."""
        count, choices, length = batch["token_ids"].shape
        out = self.student(
            repeat(batch["visual"], choices),
            batch["token_ids"].reshape(-1, length),
            batch["token_len"].reshape(-1),
            None if "visual_mask" not in batch else repeat(batch["visual_mask"], choices),
        )
        return out, self.head(out.cls, count)

    def forward(
        self,
        batch: dict,
        means: dict,
        weights: torch.Tensor | None,
        config: DistillConfig,
        weight_mean: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """The training loss of a batch (task + distillation) and each term; the one call a
        training step makes, so ``DistributedDataParallel`` can wrap the model."""
        out, logits = self.encode(batch)
        task_loss = self.task_loss(logits, batch)
        distill, stats = torch.zeros((), device=logits.device), {"vis": 0.0, "txt": 0.0}
        if self.distill_heads is not None:
            distill, stats = self.distill(out, batch, means, weights, config, weight_mean)
        loss = task_loss + distill
        parts = {
            "loss": loss,
            "task": task_loss,
            "distill_vis": stats["vis"],
            "distill_txt": stats["txt"],
        }
        return loss, parts

    def task_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
        """The task loss of the labelled samples (a batch may hold unlabelled pool samples)."""
        if "labelled" in batch:
            rows = batch["labelled"]
            batch = {**batch, "soft": batch.get("soft"), "labels": batch["labels"][rows]}
            if batch["soft"] is not None:
                batch["soft"] = batch["soft"][rows]
            logits = logits[rows]
        task = self.head.task
        if task.kind == "soft_score":
            return self.head.loss(logits, batch["soft"])
        if task.kind == "classification":
            return self.head.loss(logits, batch["labels"][:, 0])
        losses = [
            self.head.loss(logits[:, g.start : g.stop], batch["labels"][:, i])
            for i, g in enumerate(task.groups)
        ]
        return torch.stack(losses).mean()

    def distill(
        self,
        out: StudentOutput,
        batch: dict,
        means: dict,
        weights: torch.Tensor | None,
        config: DistillConfig,
        weight_mean: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """MAD on each group's gold sequence (one per group and sample)."""
        count, choices = batch["token_ids"].shape[:2]
        rows = (
            torch.arange(count, device=batch["gold"].device)[:, None] * choices + batch["gold"]
        ).reshape(-1)
        groups = batch["gold"].shape[1]
        targets = {}
        for name in VISUAL_TARGETS:
            if name in batch:
                targets[name] = batch[name].repeat_interleave(groups, dim=0)
        for name in ("txt_tok", "txt_tok_valid", "txt_emb"):  # [B, G, ...]: already gold
            if name in batch:
                targets[name] = batch[name].reshape(count * groups, *batch[name].shape[2:])
        repeated = None if weights is None else weights.repeat_interleave(groups)
        return distill_loss(
            out.rows(rows), self.distill_heads, targets, means, repeated, config, weight_mean
        )

    def export_state(self) -> dict:
        """The student and its task head only: projection heads cost nothing at inference."""
        return {
            name: value
            for name, value in self.state_dict().items()
            if not name.startswith("distill_heads.")
        }


def repeat(values: torch.Tensor, times: int) -> torch.Tensor:
    """``[B, ...]`` -> ``[B * times, ...]``, each row repeated ``times`` times in a block."""
    count = values.shape[0]
    return values[:, None].expand(count, times, *values.shape[1:]).reshape(-1, *values.shape[1:])
