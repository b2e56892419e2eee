"""Task definitions: which candidate texts form a question, where the label is, the head, the loss.

| --task | cache | per sample | head and loss |
|---|---|---|---|
| ``vcr-qa`` | VCR | Q->A: texts 0-3, label ``answer_label`` | one score per candidate, softmax CE |
| ``vcr-qar`` | VCR | Q->A and QA->R (texts 4-7, ``rationale_label``) | the same head for both |
| ``snli_ve`` | SNLI-VE | the hypothesis, ``label`` 0-2 | 3-way CE |
| ``vqa`` | VQA | the question, soft ``targets`` | BCE over the answer vocabulary |

``vcr-qar`` trains one model on both sub-tasks, which is what Q->AR (both right) needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from train.choices import DEFAULT_TASK, TASKS


@dataclass(frozen=True)
class Group:
    """A set of candidate texts scored together (a multiple-choice question)."""

    name: str
    start: int
    stop: int
    label_key: str


@dataclass
class TaskSpec:
    name: str
    kind: str  # multiple_choice | classification | soft_score
    groups: list[Group]
    num_outputs: int  # 1 score per candidate, 3 classes, or the answer vocabulary size
    labels: list[str] = field(default_factory=list)  # class names or answer vocabulary
    stratify_key: str = "label"

    def label(self, meta: dict, group: Group) -> int | None:
        value = meta.get(group.label_key)
        return None if value is None else int(value)

    def soft_targets(self, meta: dict) -> torch.Tensor:
        """The VQA soft scores as a dense ``[V]`` vector."""
        target = torch.zeros(self.num_outputs)
        for index, score in (meta.get("targets") or {}).items():
            target[int(index)] = float(score)
        return target


def resolve_task(requested: str | None, task_meta: dict, cache_dir) -> TaskSpec:
    """The task to train, from ``--task`` or the cache's own task metadata."""
    name = requested or DEFAULT_TASK.get(task_meta.get("name", ""))
    if name is None:
        raise ValueError(
            f"{cache_dir}: a {task_meta.get('name')!r} cache has no trainable task; "
            f"train on a VCR, SNLI-VE or VQA cache (tasks: {', '.join(TASKS)})"
        )
    expected = {"vcr-qa": "vcr", "vcr-qar": "vcr", "snli_ve": "snli_ve", "vqa": "vqa"}.get(name)
    if expected is None or expected != task_meta.get("name"):
        raise ValueError(
            f"--task {name} does not fit {cache_dir}, a {task_meta.get('name')!r} cache"
        )
    if name.startswith("vcr"):
        groups = [Group("qa", 0, 4, "answer_label")]
        if name == "vcr-qar":
            groups.append(Group("qar", 4, 8, "rationale_label"))
        return TaskSpec(name, "multiple_choice", groups, 1, stratify_key="answer_label")
    if name == "snli_ve":
        labels = list(task_meta.get("labels", ["entailment", "neutral", "contradiction"]))
        return TaskSpec(name, "classification", [Group("hyp", 0, 1, "label")], len(labels), labels)
    vocab = list(task_meta["answer_vocab"])
    if len(vocab) < 2:
        raise ValueError(
            f"{cache_dir}: the VQA answer vocabulary holds {len(vocab)} answer(s), nothing to "
            "learn; extract the cache again with a lower --dataset-option min_answer_count=N"
        )
    return TaskSpec(
        name, "soft_score", [Group("q", 0, 1, "targets")], len(vocab), vocab, "answer_type"
    )


class TaskHead(nn.Module):
    def __init__(self, width: int, task: TaskSpec):
        super().__init__()
        self.task = task
        self.linear = nn.Linear(width, task.num_outputs)

    def forward(self, cls: torch.Tensor, count: int) -> torch.Tensor:
        """``cls`` of every encoded sequence -> logits: ``[B, C]`` (choices) or ``[B, K]``."""
        logits = self.linear(cls)
        if self.task.kind == "multiple_choice":
            return logits.reshape(count, -1)
        return logits

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.task.kind == "soft_score":
            # BCE summed over answers, averaged over questions (as in bottom-up attention)
            return F.binary_cross_entropy_with_logits(logits, target) * target.shape[1]
        return F.cross_entropy(logits, target)
