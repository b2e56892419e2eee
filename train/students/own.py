"""The own cross-modal student (``--student tiny|small|base``): a single-stream transformer
(ViLT / UNITER style) trained from zero.

Sequence: ``[CLS]`` + visual tokens (a linear embedding of pixel patches, or a projection of
frozen features) + text tokens (an embedding table over the text teacher's tokenizer), with
position and type embeddings. The last layer also returns the ``[CLS]`` row of its attention,
averaged over heads, which MAD uses to pick the tokens to distil.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.students.base import (
    StudentBase,
    StudentContext,
    StudentInfo,
    StudentOutput,
    count_parameters,
)

SIZES = {
    "tiny": {"width": 128, "layers": 4, "heads": 4},
    "small": {"width": 256, "layers": 6, "heads": 8},
    "base": {"width": 768, "layers": 12, "heads": 12},
}


@dataclass
class StudentConfig:
    vocab_size: int
    max_text_len: int
    num_visual_tokens: int
    visual_dim: int  # input size of one visual token (P*P*3 for pixels, D for features)
    pixels: bool = True  # uint8 patches (scaled to -1..1) rather than features (layer-normed)
    width: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1


class Block(nn.Module):
    """Pre-norm transformer layer that can return its attention weights."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attention = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor, want_attention: bool = False):
        h = self.norm1(x)
        attended, _ = self.attention(h, h, h, key_padding_mask=padding, need_weights=False)
        weights = self.cls_attention(h, padding) if want_attention else None
        x = x + self.dropout(attended)
        x = x + self.dropout(self.mlp(self.norm2(x)))
        return x, weights

    @torch.no_grad()
    def cls_attention(self, h: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """The [CLS] query's attention over all keys, mean over heads, without attention dropout
        (in training nn.MultiheadAttention returns dropped-out, hence noisy, weights)."""
        attention = self.attention
        width, heads = h.shape[-1], attention.num_heads
        w, b = attention.in_proj_weight, attention.in_proj_bias
        query = F.linear(h[:, :1], w[:width], b[:width])  # [N, 1, W]
        keys = F.linear(h, w[width : 2 * width], b[width : 2 * width])  # [N, S, W]
        count, length = keys.shape[:2]
        query = query.reshape(count, 1, heads, -1).transpose(1, 2)  # [N, H, 1, d]
        keys = keys.reshape(count, length, heads, -1).transpose(1, 2)  # [N, H, S, d]
        scores = (query @ keys.transpose(-1, -2)) / query.shape[-1] ** 0.5  # [N, H, 1, S]
        scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        return scores.softmax(-1).mean(1)[:, 0]  # [N, S]


class Student(StudentBase):
    def __init__(self, config: StudentConfig, size: str = "custom"):
        super().__init__()
        self.config = config
        self.width = width = config.width
        self.max_text_len = config.max_text_len
        self.visual_norm = nn.Identity() if config.pixels else nn.LayerNorm(config.visual_dim)
        self.visual_embed = nn.Linear(config.visual_dim, width)
        self.token_embed = nn.Embedding(config.vocab_size, width)
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.visual_position = nn.Parameter(torch.zeros(1, config.num_visual_tokens, width))
        self.text_position = nn.Parameter(torch.zeros(1, config.max_text_len, width))
        self.type_embed = nn.Embedding(2, width)  # 0: visual (and [CLS]), 1: text
        self.blocks = nn.ModuleList(
            Block(width, config.heads, config.mlp_ratio, config.dropout)
            for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(width)
        for parameter in (self.cls, self.visual_position, self.text_position):
            nn.init.normal_(parameter, std=0.02)
        self.info = StudentInfo(
            kind="own transformer, trained from zero",
            source=f"{size}: {config.layers} layers, width {width}",
            parameters=count_parameters(self),
        )

    def embed_visual(self, visual: torch.Tensor) -> torch.Tensor:
        if self.config.pixels:
            visual = visual.float() / 127.5 - 1.0
        return self.visual_embed(self.visual_norm(visual.float()))

    def forward(
        self,
        visual: torch.Tensor,
        token_ids: torch.Tensor,
        token_len: torch.Tensor,
        visual_mask: torch.Tensor | None = None,
    ) -> StudentOutput:
        """Encode N (image, text) pairs.

        ``visual`` [N, T, Dv] (uint8 pixels or features), ``token_ids`` [N, L], ``token_len`` [N].
        Every visual token is real (``visual_mask`` is for region students).
        """
        count, tokens = visual.shape[0], visual.shape[1]
        length = token_ids.shape[1]
        text_mask = (
            torch.arange(length, device=token_ids.device)[None] < token_len[:, None]
        )  # [N, L]
        v = self.embed_visual(visual) + self.visual_position + self.type_embed.weight[0]
        t = self.token_embed(token_ids) + self.text_position[:, :length] + self.type_embed.weight[1]
        x = torch.cat([self.cls.expand(count, -1, -1) + self.type_embed.weight[0], v, t], dim=1)
        no_pad = torch.zeros(count, 1 + tokens, dtype=torch.bool, device=x.device)
        padding = torch.cat([no_pad, ~text_mask], dim=1)  # [N, 1 + T + L], True = ignore
        weights = None
        for number, block in enumerate(self.blocks):
            x, weights = block(x, padding, want_attention=number == len(self.blocks) - 1)
        x = self.norm(x)
        cls_attention = weights[:, 1:]  # [N, T + L]: [CLS] itself dropped
        return StudentOutput(
            x[:, 0], x[:, 1 : 1 + tokens], x[:, 1 + tokens :], text_mask, cls_attention
        )


def own_student(size: str, context: StudentContext) -> Student:
    """``tiny | small | base`` over the cached visual field and the teacher's token ids."""
    if context.visual_kind == "regions":
        raise ValueError(
            f"--student {size} reads a grid of visual tokens, not the regions of "
            f"{context.visual_field}; use --student-visual with a grid field, or a VisualBERT "
            "student for regions"
        )
    config = StudentConfig(
        vocab_size=context.vocab_size,
        max_text_len=context.max_text_len,
        num_visual_tokens=context.visual_shape[0],
        visual_dim=context.visual_shape[-1],
        pixels=context.visual_kind == "pixels",
        dropout=context.dropout,
        **SIZES[size],
    )
    return Student(config, size)
