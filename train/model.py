"""The trainable pieces together: student + task head (+ training-only projection heads)."""

from __future__ import annotations

import torch
from torch import nn

from extract.store import CacheReader
from train.mad import DistillConfig, DistillHeads, distill_loss
from train.student import SIZES, Student, StudentConfig, StudentOutput
from train.tasks import TaskHead, TaskSpec


def student_config(
    cache: CacheReader, visual_field: str, size: str, dropout: float
) -> StudentConfig:
    visual = cache.fields[visual_field]
    tokens = cache.fields["token_ids"].shape
    return StudentConfig(
        vocab_size=int(cache.manifest.spec.config["text_vocab_size"]),
        max_text_len=tokens[-1],
        num_visual_tokens=visual.shape[0],
        visual_dim=visual.shape[-1],
        pixels=visual.storage == "uint8",
        dropout=dropout,
        **SIZES[size],
    )


class DistilledStudent(nn.Module):
    def __init__(
        self, config: StudentConfig, task: TaskSpec, image_dim: int, text_dim: int, distill: bool
    ):
        super().__init__()
        self.student = Student(config)
        self.head = TaskHead(config.width, task)
        self.distill_heads = DistillHeads(config.width, image_dim, text_dim) if distill else None

    def encode(self, batch: dict) -> tuple[StudentOutput, torch.Tensor]:
        """Every (image, candidate) sequence of the batch -> student output and task logits."""
        count, choices, length = batch["token_ids"].shape
        visual = batch["visual"]
        repeated = (
            visual[:, None]
            .expand(count, choices, *visual.shape[1:])
            .reshape(count * choices, *visual.shape[1:])
        )
        out = self.student(
            repeated, batch["token_ids"].reshape(-1, length), batch["token_len"].reshape(-1)
        )
        return out, self.head(out.cls, count)

    def task_loss(self, logits: torch.Tensor, batch: dict) -> torch.Tensor:
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
    ) -> tuple[torch.Tensor, dict]:
        """MAD on each group's gold sequence (one per group and sample)."""
        count, choices = batch["token_ids"].shape[:2]
        rows = (
            torch.arange(count, device=batch["gold"].device)[:, None] * choices + batch["gold"]
        ).reshape(-1)
        groups = batch["gold"].shape[1]
        gold = StudentOutput(
            *(
                getattr(out, name)[rows]
                for name in ("cls", "visual", "text", "text_mask", "cls_attention")
            )
        )
        targets = {}
        for name in ("img_grid", "img_emb"):
            if name in batch:
                targets[name] = batch[name].repeat_interleave(groups, dim=0)
        for name in ("txt_tok", "txt_emb"):
            if name in batch:
                targets[name] = batch[name].reshape(count * groups, *batch[name].shape[2:])
        repeated = None if weights is None else weights.repeat_interleave(groups)
        return distill_loss(gold, self.distill_heads, targets, means, repeated, config)

    def export_state(self) -> dict:
        """The student and its task head only: projection heads cost nothing at inference."""
        return {
            name: value
            for name, value in self.state_dict().items()
            if not name.startswith("distill_heads.")
        }
