"""The adaptive distillation objective (MAD), as DESIGN.md states it::

    L = L_task + lambda * mean_i [ w_i * ( D_v(i) + D_t(i) ) ]
    D_v(i) = mean over the selected visual tokens j of d( P_v h_ij , t_img_tok(i, j) )
    D_t(i) = mean over the selected text tokens j of   d( P_t h_ij , t_txt_tok(i, c*, j) )

Targets are centred by the training-split mean stored with the cache and L2-normalised; the
projected student tokens are L2-normalised too, so every distance compares directions.
Tokens without a target (padding, regions a sample lacks, student tokens that overlap no teacher
token) are never distilled. ``naive`` distils every token with w = 1; ``mad`` keeps the top k
tokens per instance (by the last layer's ``[CLS]`` attention, or the k the student matches
least) and weights instances by the teacher's confidence, normalised to mean 1 over the batch.
The projection heads exist only during training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from train.choices import BRANCHES, DISTANCES, MODES, SELECTIONS, TARGETS
from train.students.base import StudentOutput


@dataclass
class DistillConfig:
    mode: str = "mad"
    select: str = "cls-attn"
    topk: float = 0.5  # k tokens when >= 1, else this fraction of each instance's valid tokens
    distance: str = "cosine"
    weight: float = 1.0  # lambda
    target: str = "tokens"
    branches: tuple[str, ...] = BRANCHES

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("--distill", self.mode, MODES),
            ("--select", self.select, SELECTIONS),
            ("--distance", self.distance, DISTANCES),
            ("--target", self.target, TARGETS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} {value!r}: choose one of {', '.join(allowed)}")
        unknown = set(self.branches) - set(BRANCHES)
        if unknown or not self.branches:
            raise ValueError(f"--branches {','.join(self.branches)}: use vis, txt or vis,txt")
        if self.topk <= 0:
            raise ValueError(f"--topk {self.topk}: give a count >= 1 or a fraction in (0, 1)")


class DistillHeads(nn.Module):
    """``P_v`` and ``P_t``: student width -> teacher widths. Dropped after training."""

    def __init__(self, width: int, image_dim: int, text_dim: int):
        super().__init__()
        self.vis = nn.Linear(width, image_dim)
        self.txt = nn.Linear(width, text_dim)


def resample_grid(grid: torch.Tensor, tokens: int) -> torch.Tensor:
    """Teacher grid ``[N, T_t, D]`` (square, row-major) -> the student's ``[N, T_s, D]``.

    Adaptive average pooling: each student patch gets the mean of the teacher cells it overlaps
    (downsampling), or the one cell it lies in (upsampling).
    """
    count, cells, width = grid.shape
    teacher_side, student_side = _side(cells), _side(tokens)
    image = grid.transpose(1, 2).reshape(count, width, teacher_side, teacher_side)
    pooled = F.adaptive_avg_pool2d(image, student_side)  # [N, D, s, s]
    return pooled.flatten(2).transpose(1, 2)


def _side(tokens: int) -> int:
    side = int(round(tokens**0.5))
    if side * side != tokens:
        raise ValueError(
            f"a grid of {tokens} tokens is not square; token targets need square grids"
        )
    return side


def centre_normalize(values: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    return F.normalize(values.float() - mean.float(), dim=-1)


def top_k_mask(scores: torch.Tensor, valid: torch.Tensor, k: float) -> torch.Tensor:
    """Per row, the ``k`` highest-scoring valid positions (all valid ones if fewer)."""
    counts = valid.sum(1)
    keep = counts.clamp(max=int(k)) if k >= 1 else (counts.float() * k).ceil().long().clamp(min=1)
    ranked = scores.masked_fill(~valid, float("-inf")).argsort(dim=1, descending=True)
    rank_of = torch.empty_like(ranked)
    rank_of.scatter_(
        1, ranked, torch.arange(scores.shape[1], device=scores.device).expand_as(ranked)
    )
    return (rank_of < keep[:, None]) & valid


def token_distance(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """``[..., D]`` x ``[..., D]`` -> ``[...]``; the student side is L2-normalised first."""
    student = F.normalize(student.float(), dim=-1)
    if kind == "cosine":
        return 1.0 - (student * teacher).sum(-1)
    if kind == "l1":
        return (student - teacher).abs().mean(-1)
    return (student - teacher).pow(2).mean(-1)


def branch_distance(
    projected: torch.Tensor,
    targets: torch.Tensor,
    valid: torch.Tensor,
    attention: torch.Tensor,
    config: DistillConfig,
) -> torch.Tensor:
    """Mean distance over each instance's selected tokens: ``[N, T, D]`` x2 -> ``[N]``."""
    distances = token_distance(projected, targets.detach(), config.distance)  # [N, T]
    if config.mode == "naive":
        chosen = valid
    else:
        scores = attention if config.select == "cls-attn" else distances
        chosen = top_k_mask(scores.detach(), valid, config.topk)
    chosen = chosen.float()
    return (distances * chosen).sum(1) / chosen.sum(1).clamp(min=1.0)


def normalize_weights(weights: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Scale instance weights to mean 1 over the batch (all ones stay ones); ``mean``: the
    batch's mean when this is only a part of it (a rank's share of a DDP batch)."""
    return weights / (weights.mean() if mean is None else mean).clamp(min=1e-12)


def distill_loss(
    out: StudentOutput,
    heads: DistillHeads,
    targets: dict[str, torch.Tensor],
    means: dict[str, torch.Tensor],
    weights: torch.Tensor | None,
    config: DistillConfig,
    weight_mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``lambda * mean_i w_i (D_v + D_t)`` over the gold sequences in ``out``; also per branch.
    ``weight_mean``: the whole batch's mean weight when ``out`` is a rank's part of it."""
    count, tokens = out.visual.shape[0], out.visual.shape[1]
    if config.mode == "none":
        zero = out.cls.new_zeros(())
        return zero, {"vis": zero, "txt": zero}
    w = torch.ones(count, device=out.cls.device)
    if config.mode == "mad" and weights is not None:
        w = normalize_weights(weights.float(), weight_mean)
    per_branch = {}
    if "vis" in config.branches:
        target = visual_targets(targets, means, tokens, config.target)
        valid = out.visual_mask
        if valid is None:
            valid = torch.ones(count, tokens, dtype=torch.bool, device=out.visual.device)
        d = branch_distance(
            heads.vis(out.visual), target, valid, out.cls_attention[:, :tokens], config
        )
        per_branch["vis"] = config.weight * (w * d).mean()
    if "txt" in config.branches:
        target = text_targets(targets, means, out.text.shape[1], config.target)
        valid = out.text_mask
        if config.target == "tokens" and "txt_tok_valid" in targets:  # tokens without a target
            valid = valid & targets["txt_tok_valid"]
        d = branch_distance(
            heads.txt(out.text), target, valid, out.cls_attention[:, tokens:], config
        )
        per_branch["txt"] = config.weight * (w * d).mean()
    zero = out.cls.new_zeros(())
    stats = {name: per_branch.get(name, zero) for name in BRANCHES}
    return sum(per_branch.values(), zero), stats


def visual_targets(targets, means, tokens: int, kind: str) -> torch.Tensor:
    """The teacher's pooled embedding for every token, its RoI features of the student's regions
    (region students), or its grid resampled to the student's patch grid."""
    if kind == "global":
        pooled = centre_normalize(targets["img_emb"], means["img_emb"])  # [N, D]
        return pooled[:, None].expand(-1, tokens, -1)
    if "regions" in targets:  # [N, R, D], the same boxes as the student's regions
        return centre_normalize(targets["regions"], means["regions"])
    return centre_normalize(resample_grid(targets["img_grid"].float(), tokens), means["img_grid"])


def text_targets(targets, means, length: int, kind: str) -> torch.Tensor:
    if kind == "global":
        pooled = centre_normalize(targets["txt_emb"], means["txt_emb"])  # [N, D]
        return pooled[:, None].expand(-1, length, -1)
    return centre_normalize(targets["txt_tok"][:, :length], means["txt_tok"])
