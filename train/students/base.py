"""What every student gives the trainer, whatever its architecture.

A student is an ``nn.Module`` whose ``forward(visual, token_ids, token_len, visual_mask)`` encodes
N (image, text) pairs into a :class:`StudentOutput`: the pooled ``[CLS]`` vector for the task
head, the visual and text token states for distillation, and the last layer's ``[CLS]`` attention
(mean over heads, without attention dropout) for MAD's token selection. It also says how it reads
text (``tokenizer``: None means it reads the text teacher's own token ids from the cache) and
what it is (``info``, shown in the run's report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VISUAL_KINDS = ("pixels", "grid", "regions")


@dataclass
class StudentOutput:
    cls: torch.Tensor  # [N, W]
    visual: torch.Tensor  # [N, T, W]
    text: torch.Tensor  # [N, L, W]
    text_mask: torch.Tensor  # [N, L] bool, True on real tokens
    cls_attention: torch.Tensor  # [N, T + L]: last layer, [CLS] query, visual keys then text keys
    visual_mask: torch.Tensor | None = None  # [N, T] bool, True on real visual tokens (regions)

    def rows(self, index: torch.Tensor) -> StudentOutput:
        """The same output for the sequences ``index`` only."""
        mask = None if self.visual_mask is None else self.visual_mask[index]
        return StudentOutput(
            self.cls[index],
            self.visual[index],
            self.text[index],
            self.text_mask[index],
            self.cls_attention[index],
            mask,
        )


@dataclass
class StudentContext:
    """What the cache offers a student: the chosen visual field and the cached text."""

    visual_field: str
    visual_kind: str  # pixels | grid | regions
    visual_shape: tuple[int, ...]  # [T, D] per sample
    vocab_size: int  # the text teacher's vocabulary (own students embed its ids)
    max_text_len: int  # tokens per cached text
    dropout: float = 0.1  # own students only; pretrained models keep their configured dropout
    tokenizer: str | None = None  # --student-tokenizer: overrides the model's own

    @property
    def patch(self) -> int:
        """Side of a cached pixel patch (``pixels:P`` stores P*P*3 values per token)."""
        side = int(round((self.visual_shape[-1] / 3) ** 0.5))
        if side * side * 3 != self.visual_shape[-1]:
            raise ValueError(
                f"{self.visual_field}: {self.visual_shape[-1]} values per token are not P*P*3 "
                "pixels; pixel students need a pixels:P cache"
            )
        return side


@dataclass
class StudentInfo:
    """What the report says about the student."""

    kind: str
    source: str
    parameters: int = 0
    loaded: int = 0  # weight tensors loaded from a checkpoint
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model
    adapters: list[str] = field(
        default_factory=list
    )  # learned pieces added between cache and model
    tokenizer: str = "the text teacher's token ids"
    notes: list[str] = field(default_factory=list)


class StudentBase(nn.Module):
    """Attributes and defaults shared by the students of the registry."""

    width: int
    tokenizer = None  # None: reads the cached token ids of the text teacher
    max_text_len: int | None = None  # most text tokens the model takes (its position table)
    info: StudentInfo

    def save_pretrained(self, folder: Path) -> bool:
        """Write the plain model in its library's format; False when it has none."""
        return False

    def pretrained_names(self) -> set[str]:
        """Names of the parameters that came from a checkpoint (the rest start new)."""
        return set()


def text_mask(token_ids: torch.Tensor, token_len: torch.Tensor) -> torch.Tensor:
    """``[N, L]`` bool, True on the first ``token_len`` positions of each row."""
    positions = torch.arange(token_ids.shape[1], device=token_ids.device)
    return positions[None] < token_len[:, None]


@torch.no_grad()
def cls_attention(
    query: nn.Linear, key: nn.Linear, hidden: torch.Tensor, heads: int, ignore: torch.Tensor
) -> torch.Tensor:
    """The attention of position 0 over every position, mean over heads: ``[N, S]``.

    Computed from the layer's input ``hidden`` ``[N, S, W]`` with its own query and key
    projections, so it is the attention without dropout even in training mode (the weights a
    library returns in training are dropped out, hence noisy). ``ignore`` ``[N, S]`` is True on
    padding.
    """
    count, length = hidden.shape[:2]
    q = query(hidden[:, :1]).reshape(count, 1, heads, -1).transpose(1, 2)  # [N, H, 1, d]
    k = key(hidden).reshape(count, length, heads, -1).transpose(1, 2)  # [N, H, S, d]
    scores = (q @ k.transpose(-1, -2)).float() / q.shape[-1] ** 0.5  # [N, H, 1, S]
    scores = scores.masked_fill(ignore[:, None, None, :], float("-inf"))
    return F.softmax(scores, dim=-1).mean(1)[:, 0]


def count_parameters(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())
